//! The benchmark floor: a Rust proxy-wasm filter doing the least a real
//! filter must do — as a network filter it copies each read out of Envoy
//! (as Pinhole must, to see the messages) and lets it pass; as an HTTP
//! filter it reads one request header. Measured beside Envoy without any
//! filter and beside Pinhole, it separates the cost of crossing into Wasm
//! from the cost of Pinhole's own work. Built only for `wasm32-wasip1`.

#[cfg(all(target_arch = "wasm32", not(test)))]
mod host {
    use proxy_wasm::traits::{Context, HttpContext, RootContext, StreamContext};
    use proxy_wasm::types::{Action, ContextType};

    proxy_wasm::main! {{
        proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { stream: false, body: false }) });
    }}

    struct Root {
        stream: bool,
        body: bool,
    }

    impl Context for Root {}

    impl RootContext for Root {
        fn on_configure(&mut self, _size: usize) -> bool {
            // Configuration "network" makes it a network filter.
            let cfg = self.get_plugin_configuration();
            self.stream = cfg.as_deref() == Some(b"network");
            // "http-body": also read the whole request body, as a filter that
            // decides on a JSON-RPC body must.
            self.body = cfg.as_deref() == Some(b"http-body");
            true
        }
        fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
            Some(if self.body {
                Box::new(NullBody)
            } else {
                Box::new(Null)
            })
        }
        fn create_stream_context(&self, _id: u32) -> Option<Box<dyn StreamContext>> {
            Some(Box::new(Null))
        }
        fn get_type(&self) -> Option<ContextType> {
            Some(if self.stream {
                ContextType::StreamContext
            } else {
                ContextType::HttpContext
            })
        }
    }

    struct Null;

    impl Context for Null {}

    impl HttpContext for Null {
        fn on_http_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
            let _ = self.get_http_request_header("authorization");
            Action::Continue
        }
    }

    struct NullBody;

    impl Context for NullBody {}

    impl HttpContext for NullBody {
        fn on_http_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
            let _ = self.get_http_request_header("authorization");
            Action::Continue
        }
        fn on_http_request_body(&mut self, size: usize, eos: bool) -> Action {
            if !eos {
                return Action::Pause;
            }
            let _ = self.get_http_request_body(0, size);
            Action::Continue
        }
    }

    impl StreamContext for Null {
        fn on_downstream_data(&mut self, size: usize, _eos: bool) -> Action {
            let _ = self.get_downstream_data(0, size);
            Action::Continue
        }
        fn on_upstream_data(&mut self, size: usize, _eos: bool) -> Action {
            let _ = self.get_upstream_data(0, size);
            Action::Continue
        }
    }
}
