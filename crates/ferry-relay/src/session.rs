//! The session actor: one per connection, linked to its listener. It owns
//! the socket and drives the pure [`ferry_smtp::Session`], answering its
//! decisions with the authenticator, the sender policy and the intake.
//! Never restarted: a panic while answering a decision is caught here, the
//! client is told `421 4.3.0` if the connection still works, and nothing
//! else is touched.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use ferry_core::policy::check_envelope_from;
use ferry_core::refusal::Refusal;
use ferry_smtp::{Action, AppLimits, Envelope, Reply, Session, SessionConfig};
use futures_util::FutureExt;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::auth::{Authenticator, Login};
use crate::greeting::Pause;
use crate::intake::{MessageIntake, Origin, reply_for};
use crate::listener::SessionSlot;
use crate::stream::{ServerStream, Stream};
use crate::tls::TlsInfo;
use crate::trace;
use ferry_core::{QueueId, SuppressedMail};
use tracing::Instrument;

/// What every session of a node shares.
pub struct SessionContext {
    pub smtp: SessionConfig,
    /// The certificate in use, from the keyring; None without TLS.
    pub tls: watch::Receiver<Option<TlsAcceptor>>,
    /// Whether this node serves TLS at all (decides the listeners' policies).
    pub tls_available: bool,
    pub auth: Authenticator,
    pub intake: MessageIntake,
    /// What the inbound listener takes in.
    pub reports: crate::inbound::Reports,
    pub command_timeout: Duration,
    pub data_timeout: Duration,
    /// Load balancers whose connections start with a PROXY header.
    pub proxies: crate::proxy::TrustedProxies,
    /// How long a balancer's connection may take to send its header.
    pub proxy_header_timeout: Duration,
    /// The pause before the greeting (early talkers are refused).
    pub greeting: crate::greeting::GreetingPause,
    /// Turns true when the node drains: idle sessions are told 421 and closed.
    pub draining: watch::Receiver<bool>,
}

/// Why the read loop stopped.
enum ReadOutcome {
    Bytes(usize),
    Eof,
    Timeout,
    Draining,
}

struct Connection {
    stream: Option<ServerStream>,
    peer: SocketAddr,
    tls: Option<TlsInfo>,
    login: Option<Login>,
    /// Recipients accepted in the current transaction.
    recipients: u64,
}

pub struct SessionActor;

/// One admitted connection; its slot in the caps is held until the session ends.
pub struct SessionArgs {
    pub ctx: Arc<SessionContext>,
    pub tcp: TcpStream,
    pub peer: SocketAddr,
    pub config: SessionConfig,
    /// Set on RFC 8314 listeners.
    pub implicit_tls: bool,
    /// The connection came through a trusted balancer (its PROXY header
    /// named the client): the balancer already held it, so no pause.
    pub behind_proxy: bool,
    pub slot: SessionSlot,
}

impl Actor for SessionActor {
    type Msg = ();
    type State = Option<SessionArgs>;
    type Arguments = SessionArgs;

    async fn pre_start(&self, _: ActorRef<()>, args: SessionArgs) -> Result<Self::State, ActorProcessingErr> {
        Ok(Some(args))
    }

    /// The whole session runs here: the thin IO loop owns the socket; the
    /// actor gives it a place in the tree (killed with its listener, or
    /// when a drain's grace runs out).
    async fn post_start(&self, myself: ActorRef<()>, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        if let Some(args) = state.take() {
            let SessionArgs {
                ctx,
                tcp,
                peer,
                config,
                implicit_tls,
                behind_proxy,
                slot,
            } = args;
            let pause = !implicit_tls && !behind_proxy && ctx.greeting.applies_to(peer.ip());
            run(ctx, tcp, peer, config, implicit_tls, pause)
                .instrument(trace::session(peer))
                .await;
            drop(slot);
        }
        myself.stop(None);
        Ok(())
    }
}

/// Runs one SMTP session to its end, after the greeting pause when `pause`.
async fn run(
    ctx: Arc<SessionContext>,
    mut tcp: TcpStream,
    peer: SocketAddr,
    config: SessionConfig,
    implicit_tls: bool,
    pause: bool,
) {
    if pause {
        match ctx.greeting.wait(&tcp, peer.ip()).await {
            Pause::Waited => {}
            Pause::Gone => return,
            Pause::SpokeFirst => {
                let refusal = Refusal::EarlyTalker;
                tracing::warn!(%peer, reason = refusal.reason(), "connection refused: {refusal}");
                ctx.intake.count_unowned_refusal(&refusal);
                let mut reply = Vec::new();
                reply_for(&refusal).write_to(&mut reply);
                let _ = tcp.write_all(&reply).await;
                let _ = tcp.shutdown().await;
                return;
            }
        }
    }
    let mut conn = Connection {
        stream: Some(Stream::Plain(tcp)),
        peer,
        tls: None,
        login: None,
        recipients: 0,
    };
    if implicit_tls && !conn.start_tls(&ctx).await {
        return;
    }
    let mut session = Session::new(config);
    let mut buf = vec![0u8; 16 * 1024];
    let mut draining = ctx.draining.clone();
    loop {
        let action = session.advance();
        let step = AssertUnwindSafe(conn.answer(&ctx, &mut session, action, &mut buf, &mut draining))
            .catch_unwind()
            .await;
        let step = match step {
            Ok(step) => step,
            Err(panic) => {
                conn.failed(&ctx, &mut session, panic_message(panic.as_ref())).await;
                false
            }
        };
        if !step {
            break;
        }
    }
    if let Some(mut stream) = conn.stream.take() {
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.shutdown()).await;
    }
}

/// What a panic said, for the log.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}

impl Connection {
    /// Answers one decision of the dialogue; false when the session is over.
    async fn answer(
        &mut self,
        ctx: &SessionContext,
        session: &mut Session,
        action: Action,
        buf: &mut [u8],
        draining: &mut watch::Receiver<bool>,
    ) -> bool {
        let conn = self;
        if session.take_oversized() {
            // Already answered by the dialogue: only counted here.
            conn.refused(ctx, &Refusal::MessageTooBig(session.message_limit()));
        }
        match action {
            Action::NeedInput => conn.read_more(ctx, session, buf, draining).await,
            Action::Authenticate(credentials) => {
                conn.authenticate(ctx, session, credentials).await;
                true
            }
            // Reports come from anyone, the null sender above all.
            Action::Mail(_) if session.is_inbound() => {
                session.mail_result(Ok(()));
                true
            }
            Action::Mail(request) => {
                conn.recipients = 0;
                session.mail_result(conn.check_sender(ctx, &request.from).await);
                true
            }
            Action::Rcpt(rcpt) if session.is_inbound() => {
                session.rcpt_result(ctx.reports.check_recipient(&rcpt).await);
                true
            }
            Action::Rcpt(rcpt) => {
                let verdict = conn.check_recipient(ctx, &rcpt).await;
                conn.recipients += u64::from(verdict.is_ok());
                session.rcpt_result(verdict);
                true
            }
            Action::Message(envelope) if session.is_inbound() => {
                session.message_result(ctx.reports.take(envelope).await);
                true
            }
            Action::Message(envelope) => {
                let reply = conn.deliver(ctx, session, envelope).await;
                session.message_result(reply);
                true
            }
            Action::StartTls => {
                conn.flush(session, ctx.command_timeout).await && conn.start_tls(ctx).await && {
                    session.tls_started();
                    true
                }
            }
            Action::Close => {
                conn.flush(session, ctx.command_timeout).await;
                false
            }
        }
    }

    /// A panic while answering: the session ends with `421 4.3.0` if the
    /// connection can still carry it.
    async fn failed(&mut self, ctx: &SessionContext, session: &mut Session, why: String) {
        tracing::error!(peer = %self.peer, panic = %why, "session failed; closing with 421");
        session.close_with(Reply::new(421, "4.3.0", "Internal error; try again later"));
        self.flush(session, ctx.command_timeout).await;
    }

    fn stream(&mut self) -> Option<&mut ServerStream> {
        self.stream.as_mut()
    }

    /// Writes what the session has queued, in one write. False if the peer is gone.
    async fn flush(&mut self, session: &mut Session, timeout: Duration) -> bool {
        let out = session.take_output();
        if out.is_empty() {
            return true;
        }
        let Some(stream) = self.stream() else { return false };
        matches!(
            tokio::time::timeout(timeout, async {
                stream.write_all(&out).await?;
                stream.flush().await
            })
            .await,
            Ok(Ok(()))
        )
    }

    async fn read_more(
        &mut self,
        ctx: &SessionContext,
        session: &mut Session,
        buf: &mut [u8],
        draining: &mut watch::Receiver<bool>,
    ) -> bool {
        if !self.flush(session, ctx.command_timeout).await {
            return false;
        }
        let timeout = if session.in_content() {
            ctx.data_timeout
        } else {
            ctx.command_timeout
        };
        let idle = session.is_idle();
        let Some(stream) = self.stream.as_mut() else {
            return false;
        };
        let outcome = tokio::select! {
            read = tokio::time::timeout(timeout, stream.read(buf)) => match read {
                Ok(Ok(0)) | Ok(Err(_)) => ReadOutcome::Eof,
                Ok(Ok(n)) => ReadOutcome::Bytes(n),
                Err(_) => ReadOutcome::Timeout,
            },
            _ = draining.wait_for(|d| *d), if idle => ReadOutcome::Draining,
        };
        match outcome {
            ReadOutcome::Bytes(n) => {
                session.receive(&buf[..n]);
                true
            }
            ReadOutcome::Eof => false,
            ReadOutcome::Timeout => {
                session.close_with(Reply::new(421, "4.4.2", "Timeout waiting for client input; closing"));
                true
            }
            ReadOutcome::Draining => {
                session.close_with(Reply::new(421, "4.3.2", "Service shutting down; try again later"));
                true
            }
        }
    }

    async fn start_tls(&mut self, ctx: &SessionContext) -> bool {
        let acceptor = ctx.tls.borrow().clone();
        let (Some(acceptor), Some(Stream::Plain(tcp))) = (acceptor, self.stream.take()) else {
            return false;
        };
        match tokio::time::timeout(ctx.command_timeout, acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => {
                let info = TlsInfo::of(tls.get_ref().1);
                tracing::Span::current().record("tls", info.version.as_str());
                self.tls = Some(info);
                self.stream = Some(Stream::Tls(Box::new(tls)));
                true
            }
            Ok(Err(e)) => {
                tracing::info!(peer = %self.peer, error = %e, "TLS handshake failed");
                false
            }
            Err(_) => false,
        }
    }

    async fn authenticate(
        &mut self,
        ctx: &SessionContext,
        session: &mut Session,
        credentials: ferry_smtp::Credentials,
    ) {
        // Boxed: sign-in's future (argon2, the store, the directory) is
        // large, and every session, idle ones too, would carry its size.
        match Box::pin(ctx.auth.authenticate(&credentials, self.peer.ip())).await {
            Ok(login) => {
                let l = login.app.limits;
                let limits = AppLimits {
                    max_message_bytes: l.max_message_bytes,
                    max_recipients: l.max_recipients,
                    max_messages_per_session: l.max_messages_per_session,
                };
                tracing::info!(peer = %self.peer, user = %credentials.username, tenant = %login.tenant.name, "authenticated");
                let span = tracing::Span::current();
                span.record("tenant", login.tenant.name.as_str());
                span.record("app", login.app.username.as_str());
                session.auth_accepted(credentials.username, limits);
                self.login = Some(login);
            }
            Err(refused) => {
                tracing::warn!(peer = %self.peer, user = %credentials.username, reason = %refused.failure, "authentication refused");
                let refusal = refused.failure.refusal();
                match &refused.owner {
                    Some((tenant, app)) => ctx.intake.count_refusal(tenant, app, &refusal),
                    None => ctx.intake.count_unowned_refusal(&refusal),
                }
                session.auth_refused(reply_for(&refusal));
            }
        }
    }

    async fn check_sender(&self, ctx: &SessionContext, from: &str) -> Result<(), Reply> {
        let Some(login) = &self.login else {
            return Err(reply_for(&Refusal::AuthenticationRequired));
        };
        let verdict = match check_envelope_from(&login.app, &login.tenant, from) {
            Ok(()) => ctx.intake.cap_room(&login.tenant, &login.app, 1).await,
            Err(refusal) => Err(Refusal::SenderNotAuthorised(refusal)),
        };
        verdict.map_err(|refusal| {
            tracing::info!(peer = %self.peer, user = %login.app.username, from, reason = refusal.reason(), "refused at MAIL: {refusal}");
            self.refused(ctx, &refusal)
        })
    }

    /// A refusal of the signed-in application's mail: counted under its
    /// rule, answered with its reply.
    fn refused(&self, ctx: &SessionContext, refusal: &Refusal) -> Reply {
        if let Some(login) = &self.login {
            ctx.intake
                .count_refusal(&login.tenant.name, &login.app.username, refusal);
        }
        reply_for(refusal)
    }

    /// A suppressed recipient is refused (550 5.1.1). When the contract
    /// counts recipients, a recipient past a cap is deferred at RCPT
    /// (451 4.7.1) rather than failing the whole message.
    async fn check_recipient(&self, ctx: &SessionContext, rcpt: &str) -> Result<(), Reply> {
        let Some(login) = &self.login else {
            return Err(reply_for(&Refusal::AuthenticationRequired));
        };
        if login.tenant.bounces.suppressed == SuppressedMail::Refuse {
            ctx.intake
                .check_suppressed(&login.tenant, rcpt)
                .await
                .map_err(|refusal| self.refused(ctx, &refusal))?;
        }
        if ctx.intake.terms.unit != ferry_core::contract::Unit::Recipients {
            return Ok(());
        }
        ctx.intake
            .cap_room(&login.tenant, &login.app, self.recipients + 1)
            .await
            .map_err(|refusal| self.refused(ctx, &refusal))
    }

    async fn deliver(&self, ctx: &SessionContext, session: &Session, envelope: Envelope) -> Reply {
        let Some(login) = &self.login else {
            return reply_for(&Refusal::AuthenticationRequired);
        };
        let origin = Origin {
            helo: session.helo_name().unwrap_or("unknown").to_string(),
            ip: self.peer.ip(),
            tls: self.tls.clone(),
        };
        let (from, rcpts) = (envelope.mail_from.clone(), envelope.recipients.len());
        let id = QueueId::generate();
        let (tenant, app) = (&login.tenant, &login.app);
        let span = trace::message(&id, &tenant.name, &app.username, rcpts, envelope.content.len());
        let intake = ctx
            .intake
            .accept(id.clone(), envelope, app, tenant, &origin)
            .instrument(span.clone())
            .await;
        span.record("result", i64::from(intake.reply.code));
        if let Some(refusal) = &intake.refusal {
            span.record("reason", refusal.reason());
        }
        let _in_message = span.enter();
        tracing::info!(
            target: "ferry::message",
            // Refused messages too: their sample and trace carry this id.
            queue_id = id.as_str(),
            tenant = %login.tenant.name,
            app = %login.app.username,
            from = %from,
            recipients = rcpts,
            size = intake.size,
            tls = self.tls.as_ref().map_or("none", |t| t.version.as_str()),
            result = %intake.reply,
            reason = intake.refusal.as_ref().map_or("", Refusal::reason),
            detail = intake.refusal.as_ref().map(ToString::to_string).unwrap_or_default(),
            "message"
        );
        intake.reply
    }
}
