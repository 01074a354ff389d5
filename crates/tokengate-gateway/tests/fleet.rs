//! Fleet-wide revocation through the built binary: a private `redis-server` and several
//! gateway replicas on loopback, the testkit issuer and an echo upstream.
//!
//! What must hold: a revocation through one replica is refused by the others; a replica
//! started late sees every earlier revocation before it reports ready; Redis killed and
//! restarted (empty) while revocations are added loses none of them; a back-channel logout
//! token or a security event at one replica revokes the user's tokens at every replica.
//! Propagation is awaited by bounded polling, never by a fixed sleep; its latency is measured
//! by the `replicas` bench, not asserted here.

mod common;

use common::{Gateway, RedisServer, eventually, issuer_toml};
use serde_json::{Value, json};
use tokengate_testkit::{CAEP_CREDENTIAL_CHANGE, EchoUpstream, Issuer};

const ADMIN_SECRET: &str = "fleet-admin-secret-0123456789";
const CLIENT_ID: &str = "rp-gateway";
const RECEIVER: &str = "https://gateway.test";

fn config(issuer: &Issuer, upstream: &EchoUpstream, redis: &RedisServer) -> String {
    format!(
        r#"listen = "127.0.0.1:0"
upstream = "{upstream}"
admin_token_env = "TG_FLEET_ADMIN"

[admin]
listen = "127.0.0.1:0"

{issuer}logout_client_id = "{CLIENT_ID}"

[revocation.redis]
url = "{redis}"
key_prefix = "tg-test"
reconnect_max_backoff = "200ms"
ping_interval = "1s"

[backchannel_logout]

[security_events]
audience = "{RECEIVER}"
[[security_events.transmitters]]
issuer = "{issuer_url}"
"#,
        upstream = upstream.url(),
        issuer = issuer_toml(issuer),
        redis = redis.url(),
        issuer_url = issuer.url(),
    )
}

struct Fleet {
    issuer: Issuer,
    upstream: EchoUpstream,
    redis: RedisServer,
    client: reqwest::Client,
}

impl Fleet {
    async fn new() -> Fleet {
        Fleet {
            issuer: Issuer::start().await,
            upstream: EchoUpstream::start().await,
            redis: RedisServer::start().await,
            client: reqwest::Client::new(),
        }
    }

    async fn replica(&self) -> Gateway {
        Gateway::start(
            &config(&self.issuer, &self.upstream, &self.redis),
            &[("TG_FLEET_ADMIN", ADMIN_SECRET)],
        )
        .await
    }

    /// The status a replica answers for `token` on a local route.
    async fn status(&self, gw: &Gateway, token: &str) -> u16 {
        self.client
            .get(format!("{}/api/items", gw.url()))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    async fn revoke(&self, gw: &Gateway, body: Value) -> Value {
        let r = self
            .client
            .post(format!("{}/revocations", gw.admin_url()))
            .bearer_auth(ADMIN_SECRET)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "POST /revocations {body}");
        r.json::<Value>().await.unwrap()["revoked"].clone()
    }

    async fn listed(&self, gw: &Gateway) -> Vec<Value> {
        let r = self
            .client
            .get(format!("{}/revocations", gw.admin_url()))
            .bearer_auth(ADMIN_SECRET)
            .send()
            .await
            .unwrap();
        r.json::<Value>().await.unwrap()["revocations"].as_array().cloned().unwrap_or_default()
    }

    async fn readyz(&self, gw: &Gateway) -> (u16, Value) {
        let r = self.client.get(format!("{}/readyz", gw.admin_url())).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    async fn metrics(&self, gw: &Gateway) -> String {
        self.client.get(format!("{}/metrics", gw.admin_url())).send().await.unwrap().text().await.unwrap()
    }

    /// Waits until every replica refuses `token` with 401 `invalid_token` — and the upstream
    /// never sees those requests.
    async fn refused_everywhere(&self, replicas: &[&Gateway], token: &str, what: &str) {
        for gw in replicas {
            eventually(what, || async { self.status(gw, token).await == 401 }).await;
            let before = self.upstream.count();
            let r =
                self.client.get(format!("{}/api/items", gw.url())).bearer_auth(token).send().await.unwrap();
            assert_eq!(r.status(), 401);
            let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
            assert!(challenge.contains("invalid_token"), "{challenge}");
            assert_eq!(self.upstream.count(), before, "a refused request reached the upstream");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revocation_through_one_replica_is_refused_by_the_others() {
    let fleet = Fleet::new().await;
    let (a, b, c) = (fleet.replica().await, fleet.replica().await, fleet.replica().await);
    let token = fleet.issuer.token().sign();
    let other = fleet.issuer.token().sign();
    let alice = fleet.issuer.token().sub("alice").sign();
    for gw in [&a, &b, &c] {
        assert_eq!(fleet.status(gw, &token).await, 200);
        assert_eq!(fleet.status(gw, &alice).await, 200);
    }

    // By value: A verifies the token, records its jti, and every replica learns it.
    fleet.revoke(&a, json!({"kind": "token", "token": token})).await;
    assert_eq!(fleet.status(&a, &token).await, 401, "the replica that took it refuses at once");
    fleet.refused_everywhere(&[&b, &c], &token, "B and C refuse the revoked token").await;
    // By subject, through another replica.
    fleet.revoke(&c, json!({"kind": "subject", "issuer": fleet.issuer.url(), "subject": "alice"})).await;
    fleet.refused_everywhere(&[&a, &b, &c], &alice, "every replica refuses alice's token").await;

    // What the others were not told about still passes, and what they saw is what A listed.
    for gw in [&a, &b, &c] {
        assert_eq!(fleet.status(gw, &other).await, 200);
        assert_eq!(fleet.listed(gw).await.len(), 2);
        let (status, ready) = fleet.readyz(gw).await;
        assert_eq!(status, 200);
        assert_eq!(ready["revocation_store"]["state"], "up", "{ready}");
    }
    let metrics = fleet.metrics(&b).await;
    assert!(metrics.contains("tokengate_revocation_store_up 1"), "{metrics}");
    assert!(metrics.contains("tokengate_revocation_store_received_total 2"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_started_late_sees_every_earlier_revocation() {
    let fleet = Fleet::new().await;
    let a = fleet.replica().await;
    let tokens: Vec<String> =
        (0..50).map(|i| fleet.issuer.token().sub(&format!("user-{i}")).sign()).collect();
    for token in &tokens {
        fleet.revoke(&a, json!({"kind": "token", "token": token})).await;
    }
    // Ready means the first full load is done: no polling needed.
    let late = fleet.replica().await;
    assert_eq!(fleet.listed(&late).await.len(), 50);
    for token in &tokens {
        assert_eq!(fleet.status(&late, token).await, 401);
    }
    assert_eq!(fleet.status(&late, &fleet.issuer.token().sign()).await, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_killed_and_restarted_while_revocations_are_added_loses_none() {
    let mut fleet = Fleet::new().await;
    let (a, b) = (fleet.replica().await, fleet.replica().await);
    let t1 = fleet.issuer.token().sign();
    fleet.revoke(&a, json!({"kind": "token", "token": t1})).await;
    fleet.refused_everywhere(&[&b], &t1, "B learns t1").await;

    fleet.redis.kill();
    for gw in [&a, &b] {
        eventually("the replicas see the store degraded", || async {
            fleet.readyz(gw).await.1["revocation_store"]["state"] == "degraded"
        })
        .await;
        let (status, ready) = fleet.readyz(gw).await;
        assert_eq!(status, 200, "a degraded store keeps the replica ready: {ready}");
        let metrics = fleet.metrics(gw).await;
        assert!(metrics.contains("tokengate_revocation_store_up 0"), "{metrics}");
    }
    // While Redis is down: each replica records locally (and at once) and queues the write.
    let t2 = fleet.issuer.token().sign();
    let t3 = fleet.issuer.token().sign();
    fleet.revoke(&a, json!({"kind": "token", "token": t2})).await;
    fleet.revoke(&b, json!({"kind": "token", "token": t3})).await;
    assert_eq!(fleet.status(&a, &t2).await, 401);
    assert_eq!(fleet.status(&b, &t3).await, 401);
    assert_eq!(fleet.status(&a, &t1).await, 401, "the local list still serves");
    assert!(fleet.metrics(&a).await.contains("tokengate_revocation_store_queued 1"));

    // Redis comes back empty: the replicas write back what they know and flush their queues.
    fleet.redis.restart().await;
    fleet.refused_everywhere(&[&a, &b], &t2, "t2 reaches B").await;
    fleet.refused_everywhere(&[&a, &b], &t3, "t3 reaches A").await;
    for gw in [&a, &b] {
        eventually("the store is up again", || async {
            fleet.readyz(gw).await.1["revocation_store"]["state"] == "up"
        })
        .await;
        assert_eq!(fleet.listed(gw).await.len(), 3);
    }
    // A replica that never saw any of it gets all three from the refilled store.
    let late = fleet.replica().await;
    assert_eq!(fleet.listed(&late).await.len(), 3, "redis log:\n{}", fleet.redis.log());
    for token in [&t1, &t2, &t3] {
        assert_eq!(fleet.status(&late, token).await, 401);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backchannel_logout_at_one_replica_revokes_the_user_everywhere() {
    let fleet = Fleet::new().await;
    let (a, b, c) = (fleet.replica().await, fleet.replica().await, fleet.replica().await);
    let alice = fleet.issuer.token().sub("alice").sign();
    let bob_session = fleet.issuer.token().sub("bob").claim("sid", json!("sid-bob-1")).sign();
    let bob_other = fleet.issuer.token().sub("bob").claim("sid", json!("sid-bob-2")).sign();
    for gw in [&a, &b, &c] {
        assert_eq!(fleet.status(gw, &alice).await, 200);
        assert_eq!(fleet.status(gw, &bob_session).await, 200);
    }

    // By sub: the OP logs alice out.
    let logout = fleet.issuer.logout_token(CLIENT_ID).sub("alice").sign();
    let r = fleet
        .client
        .post(format!("{}/backchannel-logout", a.url()))
        .form(&[("logout_token", logout.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    fleet.refused_everywhere(&[&a, &b, &c], &alice, "alice is logged out everywhere").await;

    // By sid alone, at another replica: bob's other session survives.
    let logout =
        fleet.issuer.logout_token(CLIENT_ID).without_claim("sub").claim("sid", json!("sid-bob-1")).sign();
    let r = fleet
        .client
        .post(format!("{}/backchannel-logout", b.url()))
        .form(&[("logout_token", logout.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    fleet.refused_everywhere(&[&a, &b, &c], &bob_session, "bob's session is revoked everywhere").await;
    for gw in [&a, &b, &c] {
        assert_eq!(fleet.status(gw, &bob_other).await, 200, "another session of bob still passes");
    }

    // A CAEP credential change pushed to C revokes bob entirely, everywhere.
    let set = fleet
        .issuer
        .security_event(
            RECEIVER,
            CAEP_CREDENTIAL_CHANGE,
            json!({"format": "iss_sub", "iss": fleet.issuer.url(), "sub": "bob"}),
        )
        .sign();
    let r = fleet
        .client
        .post(format!("{}/security-events", c.url()))
        .header("content-type", "application/secevent+jwt")
        .body(set)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    fleet
        .refused_everywhere(&[&a, &b, &c], &bob_other, "bob's credential change reaches every replica")
        .await;
    let metrics = fleet.metrics(&a).await;
    assert!(
        metrics.contains("tokengate_pushed_revocations_total{kind=\"logout\",result=\"accepted\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_in_redis_is_skipped_not_trusted() {
    let fleet = Fleet::new().await;
    // Members that are not entries (one not even UTF-8), and a well-formed one.
    let issuer = fleet.issuer.url();
    let good =
        json!({"kind": "token", "issuer": issuer, "jti": "from-redis", "expires_at": 4_000_000_000i64})
            .to_string();
    for member in [&b"not json"[..], &[0xff, 0xfe, b'{'][..], br#"{"kind":"everything"}"#, good.as_bytes()] {
        assert_eq!(fleet.redis.command(&[b"ZADD", b"tg-test:entries", b"4000000000", member]).await, ":1");
    }
    let a = fleet.replica().await;
    let listed = fleet.listed(&a).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["jti"], "from-redis");
    let metrics = fleet.metrics(&a).await;
    assert!(metrics.contains("tokengate_revocation_store_refused_total 3"), "{metrics}");

    // Garbage on the channel is ignored; the replica keeps following it.
    for message in [&b"{"[..], br#"{"origin":"x","entries":[{"kind":"nope"}]}"#, &[0xff][..]] {
        fleet.redis.command(&[b"PUBLISH", b"tg-test:events", message]).await;
    }
    let b = fleet.replica().await;
    let token = fleet.issuer.token().sign();
    fleet.revoke(&b, json!({"kind": "token", "token": token})).await;
    fleet.refused_everywhere(&[&a], &token, "A still follows the channel").await;
    let (status, ready) = fleet.readyz(&a).await;
    assert_eq!((status, &ready["revocation_store"]["state"]), (200, &json!("up")), "{ready}");
}
