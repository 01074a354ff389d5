//! [`TokenGate`], the `Service` the layer wraps around an inner service, its
//! [`ResponseFuture`] and [`ResponseBody`].
//!
//! A request is decided synchronously by [`Gate::authorize`]; a refusal becomes a ready
//! response without touching the inner service, and an admitted request is passed on with its
//! [`Principal`](crate::Principal) in the extensions. The future is a `pin-project-lite` enum:
//! nothing is boxed on this path.
//!
//! The rules judge the *normalised* path. When the raw path differs (`//admin`, `/a/../b`,
//! `%61`), what happens is [`NonCanonicalPath`]'s choice: refused with 400 by default, because
//! the layer cannot know whether the inner service routes on the raw path — axum's
//! `Router::layer` runs *after* routing, so a rewritten URI would be judged on one path while
//! the handler chosen for another runs — or rewritten, for services that route after the layer.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower::Service;

use crate::error::AuthError;
use crate::gate::{Authorized, Gate, Step};

/// What the layer does with an admitted request whose raw path is not its normalised form.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum NonCanonicalPath {
    /// Answer 400 `invalid_request` (the default). Always safe, wherever the inner service
    /// routes: it only ever sees paths that are their own normalised form, so the rule that
    /// was applied is the rule for the path it routes on.
    #[default]
    Refuse,
    /// Replace the path with the normalised one (query kept) and call the inner service. Only
    /// safe when the inner service routes *after* the layer, on the URI it receives — e.g.
    /// `ServiceBuilder::new().layer(gate).service(router)` or a hyper `service_fn` — and never
    /// with axum's `Router::layer` / `route_layer`, which route before the layer runs.
    Rewrite,
}

/// The service made by [`TokenGateLayer`](crate::TokenGateLayer).
pub struct TokenGate<S> {
    inner: S,
    gate: Arc<Gate>,
}

impl<S> TokenGate<S> {
    pub(crate) fn new(inner: S, gate: Arc<Gate>) -> Self {
        Self { inner, gate }
    }

    /// The shared pipeline.
    pub fn gate(&self) -> &Arc<Gate> {
        &self.gate
    }
}

impl<S: Clone> Clone for TokenGate<S> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone(), gate: self.gate.clone() }
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for TokenGate<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenGate").field("inner", &self.inner).field("gate", &self.gate).finish()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for TokenGate<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Body<Data = Bytes>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        // Call the service that was polled ready, keep a fresh clone for next time.
        let clone = self.inner.clone();
        let mut ready = std::mem::replace(&mut self.inner, clone);
        let step = self.gate.decide(request.method(), request.uri().path(), request.headers());
        let state = match step {
            Step::Done(decision) => {
                match decision.and_then(|authorized| admit(&self.gate, &mut request, authorized)) {
                    Ok(()) => State::Inner { future: ready.call(request) },
                    Err(error) => State::Refused { response: Some(self.gate.render(&error)) },
                }
            }
            // The decision needs to wait: for a key refresh (unknown `kid`) or introspection.
            // The only path that allocates a future.
            step => {
                let gate = self.gate.clone();
                State::Deferred {
                    future: Box::pin(async move {
                        let decision = gate
                            .resolve(request.method(), request.uri().path(), request.headers(), step)
                            .await;
                        match decision.and_then(|authorized| admit(&gate, &mut request, authorized)) {
                            Ok(()) => Ok(ready.call(request)),
                            Err(error) => Err(gate.render(&error)),
                        }
                    }),
                }
            }
        };
        ResponseFuture { state }
    }
}

/// Why a non-canonical path is refused in [`NonCanonicalPath::Refuse`].
const NON_CANONICAL: AuthError = AuthError::InvalidRequest("the request path is not in normalised form");

/// Prepares an admitted request for the inner service: its path (see [`NonCanonicalPath`]),
/// the principal, the gate's context.
fn admit<B>(gate: &Gate, request: &mut Request<B>, authorized: Authorized) -> Result<(), AuthError> {
    if authorized.path.as_str() != request.uri().path() {
        match gate.non_canonical_path() {
            NonCanonicalPath::Refuse => return Err(NON_CANONICAL),
            NonCanonicalPath::Rewrite => {
                *request.uri_mut() = with_path(request.uri(), authorized.path.as_str())?;
            }
        }
    }
    let extensions = request.extensions_mut();
    extensions.insert(gate.context().clone());
    match authorized.principal {
        Some(principal) => {
            extensions.insert(principal);
        }
        None => {
            extensions.remove::<crate::Principal>();
        }
    }
    Ok(())
}

/// `uri` with its path replaced and its query kept.
fn with_path(uri: &Uri, path: &str) -> Result<Uri, AuthError> {
    const BAD: AuthError = AuthError::InvalidRequest("the request path is not allowed");
    let path_and_query = match uri.query() {
        Some(query) => PathAndQuery::try_from(format!("{path}?{query}")),
        None => PathAndQuery::try_from(path),
    }
    .map_err(|_| BAD)?;
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(path_and_query);
    Uri::from_parts(parts).map_err(|_| BAD)
}

pin_project! {
    /// The future of [`TokenGate`]: the inner service's, or a ready refusal.
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Inner { #[pin] future: F },
        Refused { response: Option<Response<Bytes>> },
        Deferred { future: Deferred<F> },
    }
}

/// A decision that had to wait: it yields the inner service's future, or a refusal.
type Deferred<F> = Pin<Box<dyn Future<Output = Result<F, Response<Bytes>>> + Send>>;

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut this = self.as_mut().project();
            let next = match this.state.as_mut().project() {
                StateProj::Inner { future } => {
                    let response = ready!(future.poll(cx))?;
                    return Poll::Ready(Ok(response.map(ResponseBody::inner)));
                }
                StateProj::Refused { response } => {
                    let response = response.take().expect("ResponseFuture polled after completion");
                    return Poll::Ready(Ok(response.map(ResponseBody::refused)));
                }
                StateProj::Deferred { future } => match ready!(future.as_mut().poll(cx)) {
                    Ok(future) => State::Inner { future },
                    Err(response) => State::Refused { response: Some(response) },
                },
            };
            this.state.set(next);
        }
    }
}

pin_project! {
    /// The body of a [`TokenGate`] response: the inner service's, or a refusal's JSON.
    pub struct ResponseBody<B> {
        #[pin]
        kind: BodyKind<B>,
    }
}

pin_project! {
    #[project = BodyProj]
    enum BodyKind<B> {
        Inner { #[pin] body: B },
        Refused { bytes: Option<Bytes> },
    }
}

impl<B> ResponseBody<B> {
    fn inner(body: B) -> Self {
        Self { kind: BodyKind::Inner { body } }
    }

    fn refused(bytes: Bytes) -> Self {
        Self { kind: BodyKind::Refused { bytes: Some(bytes) } }
    }
}

impl<B: Body<Data = Bytes>> Body for ResponseBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            BodyProj::Inner { body } => body.poll_frame(cx),
            BodyProj::Refused { bytes } => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            BodyKind::Inner { body } => body.is_end_stream(),
            BodyKind::Refused { bytes } => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            BodyKind::Inner { body } => body.size_hint(),
            BodyKind::Refused { bytes } => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}
