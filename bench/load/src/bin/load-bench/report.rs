//! The results: one [`Row`] per measured run, the markdown table with every ratio taken
//! against the same run's baseline, notes, and the targets checked against the rows.

use std::fmt::Write as _;

/// What a row measured; decides its label and its baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// axum 0.8, no auth: the baseline of every in-process row.
    Bare,
    /// tokengate, one token over and over (a verified-token cache hit per request).
    TokengateWarm,
    /// tokengate, the first pass over the distinct tokens: every request a cold verification.
    TokengateFirstPass,
    /// tokengate, later passes over the same distinct tokens (cache hits).
    TokengateLaterPasses,
    /// tokengate on the `introspect` route, introspection cache warm.
    TokengateIntrospect,
    /// axum 0.7, no auth: what jwt-authorizer's framework costs by itself.
    BareAxum07,
    /// jwt-authorizer, one token.
    JwtAuthorizerWarm,
    /// jwt-authorizer, the first pass over the distinct tokens (measured like tokengate's).
    JwtAuthorizerFirstPass,
    /// jwt-authorizer, later passes over the distinct tokens (it caches nothing: all verified).
    JwtAuthorizerLaterPasses,
    /// The bare upstream, directly: the baseline of the proxy rows.
    UpstreamDirect,
    /// nginx reverse proxy (no auth) → upstream.
    Nginx,
    /// tokengate-gateway reverse proxy (warm token) → upstream.
    Gateway,
}

impl Kind {
    fn label(self, tokens: usize) -> String {
        match self {
            Kind::Bare => "bare axum 0.8 (baseline)".into(),
            Kind::TokengateWarm => "tokengate, 1 warm token".into(),
            Kind::TokengateFirstPass => format!("tokengate, {tokens} tokens: 1st pass (all cold)"),
            Kind::TokengateLaterPasses => format!("tokengate, {tokens} tokens: later passes (cached)"),
            Kind::TokengateIntrospect => "tokengate, `introspect` route, warm cache".into(),
            Kind::BareAxum07 => "bare axum 0.7 (jwt-authorizer's framework)".into(),
            Kind::JwtAuthorizerWarm => "jwt-authorizer 0.15, 1 token".into(),
            Kind::JwtAuthorizerFirstPass => format!("jwt-authorizer 0.15, {tokens} tokens: 1st pass"),
            Kind::JwtAuthorizerLaterPasses => format!("jwt-authorizer 0.15, {tokens} tokens: later passes"),
            Kind::UpstreamDirect => "upstream (bare axum 0.8) direct (proxy baseline)".into(),
            Kind::Nginx => "nginx reverse proxy, no auth".into(),
            Kind::Gateway => "tokengate-gateway proxy, warm token".into(),
        }
    }

    /// The row this one's ratio and added CPU are taken against.
    fn baseline(self) -> Kind {
        match self {
            Kind::UpstreamDirect | Kind::Nginx | Kind::Gateway => Kind::UpstreamDirect,
            _ => Kind::Bare,
        }
    }
}

/// One measured run.
#[derive(Debug, Clone)]
pub struct Row {
    /// What was measured.
    pub kind: Kind,
    /// Server worker threads (nginx: worker processes).
    pub workers: usize,
    /// Requests per second.
    pub rps: f64,
    /// Median latency, µs.
    pub p50_us: f64,
    /// 99th percentile latency, µs.
    pub p99_us: f64,
    /// Server CPU (utime + stime; proxy rows: proxy + upstream) per request, µs.
    pub cpu_us_per_req: f64,
    /// Completed requests.
    pub requests: u64,
    /// Wall seconds of the run.
    pub seconds: f64,
}

/// All rows of one run.
#[derive(Debug, Default)]
pub struct Report {
    /// In the order measured.
    pub rows: Vec<Row>,
    /// The number of distinct tokens, for labels.
    pub tokens: usize,
    /// CPU clock ticks per second, for the precision note.
    pub ticks_per_second: u64,
    /// Req/s ratios of scenarios measured side by side, round by round.
    pub round_ratios: Vec<RoundRatios>,
}

/// The req/s of `kind` over that of `other`, in each round of a group measured in rounds.
#[derive(Debug, Clone)]
pub struct RoundRatios {
    /// The scenario over …
    pub kind: Kind,
    /// … this one (its baseline, or its peer).
    pub other: Kind,
    /// Server worker threads of both.
    pub workers: usize,
    /// One ratio per round.
    pub ratios: Vec<f64>,
}

/// The median of `values` (the mean of the middle two for an even count); `None` if empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// One row for several rounds of the same scenario: the round with the median req/s (the
/// lower middle one for an even count), with CPU per request, requests and seconds over all
/// rounds.
pub fn median_round(rounds: &[Row]) -> Option<Row> {
    let mut by_rps: Vec<&Row> = rounds.iter().collect();
    by_rps.sort_by(|a, b| a.rps.total_cmp(&b.rps));
    let middle = *by_rps.get(by_rps.len().checked_sub(1)? / 2)?;
    let requests: u64 = rounds.iter().map(|row| row.requests).sum();
    let cpu_us: f64 = rounds.iter().map(|row| row.cpu_us_per_req * row.requests as f64).sum();
    Some(Row {
        cpu_us_per_req: if requests == 0 { 0.0 } else { cpu_us / requests as f64 },
        requests,
        seconds: rounds.iter().map(|row| row.seconds).sum(),
        ..middle.clone()
    })
}

fn micros(value: f64) -> String {
    format!("{value:.1}")
}

fn millis(us: f64) -> String {
    format!("{:.2} ms", us / 1000.0)
}

impl Report {
    fn find(&self, kind: Kind, workers: usize) -> Option<&Row> {
        self.rows.iter().find(|row| row.kind == kind && row.workers == workers)
    }

    /// Requests/s of `kind` over that of `other`, same worker count: the median of the rounds'
    /// ratios when the two were measured in rounds, else the ratio of their rows.
    fn rps_ratio(&self, kind: Kind, other: Kind, workers: usize) -> Option<f64> {
        if let Some(ratio) = self.rounds(kind, other, workers).and_then(median) {
            return Some(ratio);
        }
        Some(self.find(kind, workers)?.rps / self.find(other, workers)?.rps)
    }

    fn rounds(&self, kind: Kind, other: Kind, workers: usize) -> Option<&[f64]> {
        self.round_ratios
            .iter()
            .find(|r| (r.kind, r.other, r.workers) == (kind, other, workers))
            .map(|r| r.ratios.as_slice())
    }

    /// CPU µs per request of `kind` minus that of its baseline, same worker count.
    fn added_us(&self, kind: Kind, workers: usize) -> Option<f64> {
        Some(self.find(kind, workers)?.cpu_us_per_req - self.find(kind.baseline(), workers)?.cpu_us_per_req)
    }

    /// The markdown table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        out.push_str("| scenario | workers | req/s | ratio vs bare | p50 | p99 | server CPU µs/req | added µs/req | req/s vs nginx |\n");
        out.push_str("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
        for row in &self.rows {
            let baseline = row.kind.baseline();
            let ratio = match self.rps_ratio(row.kind, baseline, row.workers) {
                Some(ratio) if row.kind != baseline => format!("{ratio:.2}×"),
                _ => "1.00×".into(),
            };
            let added = match self.added_us(row.kind, row.workers) {
                Some(added) if row.kind != baseline => format!("{added:+.1}"),
                _ => "—".into(),
            };
            let vs_nginx = match (row.kind, self.rps_ratio(Kind::Gateway, Kind::Nginx, row.workers)) {
                (Kind::Gateway, Some(ratio)) => format!("{ratio:.2}×"),
                _ => "—".into(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} | {ratio} | {} | {} | {} | {added} | {vs_nginx} |",
                row.kind.label(self.tokens),
                row.workers,
                row.rps,
                millis(row.p50_us),
                millis(row.p99_us),
                micros(row.cpu_us_per_req),
            );
        }
        out
    }

    /// Notes on reading this run's table: baselines, drift, precision.
    pub fn notes(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "- ratio and added CPU: against `bare axum 0.8` of the same worker count; proxy rows against the upstream measured directly, and their server CPU is proxy + upstream, so their added CPU is the proxy's own.\n",
        );
        for workers in self.worker_counts() {
            if let (Some(bare), Some(direct)) =
                (self.find(Kind::Bare, workers), self.find(Kind::UpstreamDirect, workers))
            {
                let _ = writeln!(
                    out,
                    "- drift, {workers} worker(s): the same bare axum 0.8 measured again later (the upstream row) ran at {:.2}× the first measurement's req/s, {:+.1} µs/req CPU.",
                    direct.rps / bare.rps,
                    direct.cpu_us_per_req - bare.cpu_us_per_req,
                );
            }
            for rounds in self.round_ratios.iter().filter(|r| r.workers == workers && !r.ratios.is_empty()) {
                let shown: Vec<String> = rounds.ratios.iter().map(|r| format!("{r:.2}×")).collect();
                let _ = writeln!(
                    out,
                    "- {} vs {}, {workers} worker(s), round by round (each pair measured seconds apart): {}; the table's ratio is their median, and both rows are their median round (CPU over all rounds).",
                    rounds.kind.label(self.tokens),
                    rounds.other.label(self.tokens),
                    shown.join(", "),
                );
            }
            for kind in
                [Kind::JwtAuthorizerWarm, Kind::JwtAuthorizerFirstPass, Kind::JwtAuthorizerLaterPasses]
            {
                if let (Some(row), Some(base)) =
                    (self.find(kind, workers), self.find(Kind::BareAxum07, workers))
                {
                    let _ = writeln!(
                        out,
                        "- {}, {workers} worker(s): {:+.1} µs/req added against bare axum 0.7 (its own framework).",
                        kind.label(self.tokens),
                        row.cpu_us_per_req - base.cpu_us_per_req,
                    );
                }
            }
            for kind in [Kind::TokengateFirstPass, Kind::JwtAuthorizerFirstPass] {
                if let Some(row) = self.find(kind, workers) {
                    let tick_us = 1e6 / self.ticks_per_second as f64 / row.requests as f64;
                    let _ = writeln!(
                        out,
                        "- {}, {workers} worker(s): {} requests in {:.2} s, a short run: one CPU tick is {tick_us:.1} µs/req.",
                        kind.label(self.tokens),
                        row.requests,
                        row.seconds,
                    );
                }
            }
        }
        out
    }

    fn worker_counts(&self) -> Vec<usize> {
        let mut counts: Vec<usize> = self.rows.iter().map(|row| row.workers).collect();
        counts.dedup();
        counts.sort_unstable();
        counts.dedup();
        counts
    }

    /// The load targets (item 5), each with this run's number and met / missed.
    pub fn targets(&self) -> String {
        let mut out = String::new();
        let mut line = |what: String, value: Option<f64>, unit: &str, limit: f64, at_most: bool| {
            let verdict = match value {
                None => "not measured".to_owned(),
                Some(v) if (at_most && v <= limit) || (!at_most && v >= limit) => "met".to_owned(),
                Some(_) => "MISSED".to_owned(),
            };
            let shown = value.map_or("—".to_owned(), |v| format!("{v:.2}{unit}"));
            let bound = if at_most { "≤" } else { "≥" };
            let _ = writeln!(out, "- {what}: {shown} (target {bound} {limit}{unit}): {verdict}");
        };
        for workers in self.worker_counts() {
            line(
                format!("warm token, added CPU, {workers} worker(s)"),
                self.added_us(Kind::TokengateWarm, workers),
                " µs",
                1.5,
                true,
            );
            line(
                format!("warm token, req/s vs bare axum, {workers} worker(s)"),
                self.rps_ratio(Kind::TokengateWarm, Kind::Bare, workers),
                "×",
                0.85,
                false,
            );
            line(
                format!("`introspect` route, warm cache, added CPU, {workers} worker(s)"),
                self.added_us(Kind::TokengateIntrospect, workers),
                " µs",
                3.0,
                true,
            );
            line(
                format!("gateway req/s vs nginx, {workers} worker(s)"),
                self.rps_ratio(Kind::Gateway, Kind::Nginx, workers),
                "×",
                0.8,
                false,
            );
        }
        let two = 2;
        line(
            format!(
                "2 workers, {} distinct tokens, 1st pass (all cold) vs jwt-authorizer's 1st pass",
                self.tokens
            ),
            self.rps_ratio(Kind::TokengateFirstPass, Kind::JwtAuthorizerFirstPass, two),
            "×",
            1.6,
            false,
        );
        line(
            format!("2 workers, {} distinct tokens, later passes (cached) vs jwt-authorizer's", self.tokens),
            self.rps_ratio(Kind::TokengateLaterPasses, Kind::JwtAuthorizerLaterPasses, two),
            "×",
            1.6,
            false,
        );
        line(
            "2 workers, warm token vs jwt-authorizer".into(),
            self.rps_ratio(Kind::TokengateWarm, Kind::JwtAuthorizerWarm, two),
            "×",
            4.0,
            false,
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kind: Kind, workers: usize, rps: f64, cpu: f64) -> Row {
        Row {
            kind,
            workers,
            rps,
            p50_us: 100.0,
            p99_us: 900.0,
            cpu_us_per_req: cpu,
            requests: 1000,
            seconds: 1.0,
        }
    }

    #[test]
    fn ratios_and_added_cpu_are_against_the_baseline_of_the_same_workers() {
        let report = Report {
            rows: vec![
                row(Kind::Bare, 1, 1000.0, 10.0),
                row(Kind::TokengateWarm, 1, 900.0, 11.0),
                row(Kind::Bare, 2, 2000.0, 12.0),
                row(Kind::TokengateWarm, 2, 1000.0, 20.0),
                row(Kind::UpstreamDirect, 2, 2000.0, 12.0),
                row(Kind::Nginx, 2, 1000.0, 30.0),
                row(Kind::Gateway, 2, 900.0, 40.0),
            ],
            tokens: 10,
            ticks_per_second: 100,
            ..Report::default()
        };
        assert_eq!(report.added_us(Kind::TokengateWarm, 1), Some(1.0));
        assert_eq!(report.added_us(Kind::TokengateWarm, 2), Some(8.0));
        assert_eq!(report.rps_ratio(Kind::TokengateWarm, Kind::Bare, 2), Some(0.5));
        assert_eq!(report.added_us(Kind::Gateway, 2), Some(28.0));
        let table = report.table();
        assert!(table.contains("| tokengate, 1 warm token | 1 | 900 | 0.90× |"), "{table}");
        assert!(table.contains("| +28.0 | 0.90× |"), "{table}");
        let targets = report.targets();
        assert!(
            targets.contains("warm token, added CPU, 1 worker(s): 1.00 µs (target ≤ 1.5 µs): met"),
            "{targets}"
        );
        assert!(
            targets.contains("warm token, req/s vs bare axum, 2 worker(s): 0.50× (target ≥ 0.85×): MISSED"),
            "{targets}"
        );
    }

    #[test]
    fn rounds_give_the_median_round_and_the_median_ratio() {
        let rounds = [
            row(Kind::Nginx, 1, 900.0, 30.0),
            row(Kind::Nginx, 1, 500.0, 50.0),
            row(Kind::Nginx, 1, 1000.0, 28.0),
        ];
        let row = median_round(&rounds).unwrap();
        assert_eq!(row.rps, 900.0);
        assert_eq!(row.requests, 3000);
        assert!((row.cpu_us_per_req - 36.0).abs() < 1e-9, "{}", row.cpu_us_per_req);
        assert!(median_round(&[]).is_none());
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);

        // The gateway's ratio to nginx is the median of the rounds', not the ratio of the rows.
        let report = in_rounds((Kind::Gateway, 500.0), (Kind::Nginx, 1000.0), vec![0.9, 0.5, 0.85]);
        assert_eq!(report.rps_ratio(Kind::Gateway, Kind::Nginx, 1), Some(0.85));
        assert!(
            report.notes().contains("round by round (each pair measured seconds apart): 0.90×, 0.50×, 0.85×")
        );
        assert!(report.targets().contains("gateway req/s vs nginx, 1 worker(s): 0.85× (target ≥ 0.8×): met"));

        // Any pair measured in rounds: the warm token against bare axum too.
        let report = in_rounds((Kind::TokengateWarm, 700.0), (Kind::Bare, 1000.0), vec![0.95, 0.7, 0.9]);
        assert_eq!(report.rps_ratio(Kind::TokengateWarm, Kind::Bare, 1), Some(0.9));
        assert_eq!(
            report.rps_ratio(Kind::Bare, Kind::TokengateWarm, 1),
            Some(1000.0 / 700.0),
            "not the other way"
        );
        assert!(
            report.table().contains("| tokengate, 1 warm token | 1 | 700 | 0.90× |"),
            "{}",
            report.table()
        );
    }

    fn row_of(kind: Kind, rps: f64) -> Row {
        row(kind, 1, rps, 10.0)
    }

    /// A report of `kind` and `other` (each with its row's req/s) measured in rounds with
    /// `ratios`, one worker.
    fn in_rounds((kind, rps): (Kind, f64), (other, other_rps): (Kind, f64), ratios: Vec<f64>) -> Report {
        Report {
            rows: vec![row_of(other, other_rps), row_of(kind, rps)],
            round_ratios: vec![RoundRatios { kind, other, workers: 1, ratios }],
            ..Report::default()
        }
    }
}
