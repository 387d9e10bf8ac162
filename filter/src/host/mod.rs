//! The only code that talks to the proxy-wasm host. It moves bytes between
//! Envoy and the host-free engine and never decides anything itself.

mod audit;
mod http;
mod metrics;
mod notify;
mod tcp;

use std::rc::Rc;
use std::time::UNIX_EPOCH;

use proxy_wasm::traits::{Context, HttpContext, RootContext, StreamContext};
use proxy_wasm::types::{ContextType, LogLevel};

use crate::engine::{self, short_digest, Engine, Listener};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(Root { loaded: Rc::new(Loaded::NotConfigured), shared_key: String::new(), listener: Listener::Http })
    });
}}

/// The policy state shared by the HTTP contexts of one root context. A new
/// configuration replaces the `Rc`; requests in flight keep the one they
/// started with.
pub(crate) enum Loaded {
    NotConfigured,
    Ready(Box<Engine>),
    Failed(String),
}

fn log_loaded(engine: &Engine, verb: &str) {
    log::info!(
        "pinhole: {verb} policy {} ({}) for target `{}` ({}): {} rules, {} roles, {} issuers",
        short_digest(&engine.digest),
        engine.policy.name.as_deref().unwrap_or("unnamed"),
        engine.target.name,
        engine.target.protocol.as_str(),
        engine.policy.rules.len(),
        engine.policy.roles.len(),
        engine.policy.issuers.len(),
    );
}

fn log_grants(engine: &Engine) {
    let g = &engine.grants;
    if g.is_empty() && engine.rejected_grants.is_empty() {
        return;
    }
    log::info!(
        "pinhole: policy {} carries {} valid grants ({} refused)",
        short_digest(&engine.digest),
        g.grants().len(),
        engine.rejected_grants.len()
    );
    for r in &engine.rejected_grants {
        log::warn!(
            "pinhole: grant {} refused: it {}",
            r.id.as_deref().unwrap_or("(unreadable)"),
            r.error
        );
    }
}

struct Root {
    loaded: Rc<Loaded>,
    /// Where this plugin's configurations publish their revocations.
    shared_key: String,
    /// HTTP or network filter: from the plugin configuration, so it is
    /// known even when the policy does not load.
    listener: Listener,
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        _body: usize,
        _trailers: usize,
    ) {
        let status = self
            .get_http_call_response_header(":status")
            .and_then(|s| s.parse::<u32>().ok());
        if !notify::delivered(token, status) {
            audit::delivered(token, status);
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let cfg = self.get_plugin_configuration().unwrap_or_default();
        self.listener = Listener::of_config(&cfg);
        let audit_period = audit::configure(engine::audit_sink_of_config(&cfg));
        let notify_period = notify::configure(engine::review_webhook_of_config(&cfg));
        if let Some(period) = [audit_period, notify_period].into_iter().flatten().min() {
            self.set_tick_period(period);
        }
        let plugin = self
            .get_property(vec!["plugin_name"])
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_else(|| "pinhole".into());
        let scope = format!(
            "{plugin}/{}",
            engine::target_of_config(&cfg).unwrap_or_else(|| "-".into())
        );
        self.shared_key = engine::revocations_key(&scope);
        self.loaded = Rc::new(match Engine::from_plugin_config(&cfg) {
            Ok(engine) => {
                log_loaded(&engine, "loaded");
                log_grants(&engine);
                // Publish for connections still running under an older
                // configuration (revocations), and keep this one as the
                // last good policy.
                let _ = self.set_shared_data(&self.shared_key, Some(&engine.published()), None);
                let _ = self.set_shared_data(&engine::last_good_key(&scope), Some(&cfg), None);
                Loaded::Ready(Box::new(engine))
            }
            Err(reason) => {
                metrics::inc(crate::metrics::POLICY_LOAD_FAILURE);
                // A policy that fails to load never replaces one that works:
                // keep the last good one of this plugin and target.
                let last = self
                    .get_shared_data(&engine::last_good_key(&scope))
                    .0
                    .and_then(|b| Engine::from_plugin_config(&b).ok());
                match last {
                    Some(engine) => {
                        log::error!(
                            "pinhole: new policy NOT loaded, keeping the last good policy {} in force: {reason}",
                            short_digest(&engine.digest)
                        );
                        log_loaded(&engine, "kept");
                        Loaded::Ready(Box::new(engine))
                    }
                    None => {
                        log::error!(
                            "pinhole: policy NOT loaded, refusing all traffic (HTTP 503, PostgreSQL 08004; fail closed): {reason}"
                        );
                        Loaded::Failed(reason)
                    }
                }
            }
        });
        // Always accept the configuration: a bad policy must not take the
        // listener down, it must refuse traffic with a clear error.
        true
    }

    fn on_tick(&mut self) {
        audit::flush(self);
        notify::flush(self);
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(http::Http::new(context_id, self.loaded.clone())))
    }

    fn create_stream_context(&self, context_id: u32) -> Option<Box<dyn StreamContext>> {
        Some(Box::new(tcp::Tcp::new(
            context_id,
            self.loaded.clone(),
            self.shared_key.clone(),
        )))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(match self.listener {
            Listener::Http => ContextType::HttpContext,
            Listener::Postgres => ContextType::StreamContext,
        })
    }
}

/// Seconds since the Unix epoch from the host clock.
pub(crate) fn now_secs(ctx: &dyn Context) -> u64 {
    ctx.get_current_time()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
