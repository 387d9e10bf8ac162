//! PostgreSQL wire protocol 3.0: incremental decoding and encoding of every
//! frontend and backend message.
//!
//! - [`decode_frontend`] / [`decode_backend`] look at the start of a buffer
//!   and return `Ok(None)` until a whole frame is there (nothing consumed),
//!   else the message and how many bytes it took.
//! - The first frontend messages (SSLRequest, GSSENCRequest, CancelRequest,
//!   StartupMessage) have no type byte: the caller says which phase it is in
//!   ([`FrontendPhase`]); [`FrontendMessage::next_phase`] tracks it.
//! - A length below 4, or above the cap of its message type ([`Limits`]), is
//!   an error as soon as the 5-byte header is seen: nothing is ever
//!   allocated from a length the peer chose, only from bytes it really sent.
//! - An unknown frontend type is an error (a client speaking something else
//!   is disconnected); an unknown backend type decodes to
//!   [`BackendMessage::Other`].
//! - [`Framer`] cuts a byte stream (arbitrary TCP read boundaries) into
//!   complete raw frames and keeps the incomplete tail.
//!
//! Frontend text (SQL, names, startup parameters) must be UTF-8 (else
//! [`PgError::Malformed`]); backend text is decoded lossily.

use std::fmt;

/// Protocol 3.0 in a StartupMessage.
pub const PROTOCOL_3_0: u32 = 196_608;
/// The request code of an SSLRequest.
pub const SSL_REQUEST_CODE: u32 = 80_877_103;
/// The request code of a GSSENCRequest.
pub const GSSENC_REQUEST_CODE: u32 = 80_877_104;
/// The request code of a CancelRequest.
pub const CANCEL_REQUEST_CODE: u32 = 80_877_102;

/// Per-message-type size caps, in bytes, counting the 4-byte length field
/// (not the type byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Untyped startup-phase messages (StartupMessage, SSLRequest, ...).
    pub startup: usize,
    /// Query, Parse (SQL text).
    pub query: usize,
    /// Bind and FunctionCall (parameter values).
    pub bind: usize,
    /// CopyData, both directions.
    pub copy_data: usize,
    /// Backend DataRow and FunctionCallResponse.
    pub data_row: usize,
    /// Everything else (passwords, SASL, errors, descriptions...).
    pub small: usize,
}

/// Startup-phase messages.
pub const MAX_STARTUP_LEN: usize = 10 * 1024;
/// Query / Parse.
pub const MAX_QUERY_LEN: usize = 1024 * 1024;
/// Bind / FunctionCall.
pub const MAX_BIND_LEN: usize = 1024 * 1024;
/// CopyData.
pub const MAX_COPY_DATA_LEN: usize = 1024 * 1024;
/// Backend DataRow / FunctionCallResponse.
pub const MAX_DATA_ROW_LEN: usize = 16 * 1024 * 1024;
/// Any other message.
pub const MAX_SMALL_LEN: usize = 64 * 1024;

impl Limits {
    /// The default caps (the `MAX_*` constants).
    pub const DEFAULT: Limits = Limits {
        startup: MAX_STARTUP_LEN,
        query: MAX_QUERY_LEN,
        bind: MAX_BIND_LEN,
        copy_data: MAX_COPY_DATA_LEN,
        data_row: MAX_DATA_ROW_LEN,
        small: MAX_SMALL_LEN,
    };

    /// The cap of a frontend message type.
    pub fn frontend(&self, tag: u8) -> usize {
        match tag {
            b'Q' | b'P' => self.query,
            b'B' | b'F' => self.bind,
            b'd' => self.copy_data,
            _ => self.small,
        }
    }

    /// The cap of a backend message type.
    pub fn backend(&self, tag: u8) -> usize {
        match tag {
            b'D' | b'V' => self.data_row,
            b'd' => self.copy_data,
            _ => self.small,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// A decoding error: the connection cannot continue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PgError {
    #[error("message length {len} is below 4 (type {tag})")]
    ShortLength { tag: Tag, len: i64 },
    #[error("message length {len} exceeds the cap {max} (type {tag})")]
    TooLong { tag: Tag, len: usize, max: usize },
    #[error("unknown frontend message type {0}")]
    UnknownFrontendType(Tag),
    #[error("unknown startup request code {0}")]
    UnknownStartupCode(u32),
    #[error("malformed message (type {tag}): {what}")]
    Malformed { tag: Tag, what: &'static str },
}

/// A message type byte, or none for untyped startup messages; shown in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag(pub Option<u8>);

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("startup"),
            Some(b) if b.is_ascii_graphic() => write!(f, "'{}'", char::from(b)),
            Some(b) => write!(f, "0x{b:02x}"),
        }
    }
}

/// Where the frontend stream is: before the StartupMessage (untyped
/// messages) or after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrontendPhase {
    Startup,
    Normal,
}

/// Where the backend stream is: right after an SSLRequest or GSSENCRequest
/// the server answers with one unframed byte (`S`/`G` accept, `N` refuse).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendPhase {
    EncryptionResponse,
    Normal,
}

/// Describe/Close target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// `S`: a prepared statement.
    Statement,
    /// `P`: a portal.
    Portal,
}

impl TargetKind {
    fn byte(self) -> u8 {
        match self {
            TargetKind::Statement => b'S',
            TargetKind::Portal => b'P',
        }
    }
}

/// A message sent by the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrontendMessage {
    SslRequest,
    GssEncRequest,
    CancelRequest {
        process_id: i32,
        secret_key: Vec<u8>,
    },
    Startup(StartupMessage),
    Query {
        sql: String,
    },
    Parse {
        name: String,
        query: String,
        param_types: Vec<u32>,
    },
    Bind(Bind),
    Execute {
        portal: String,
        max_rows: i32,
    },
    Describe {
        kind: TargetKind,
        name: String,
    },
    Close {
        kind: TargetKind,
        name: String,
    },
    Sync,
    Flush,
    /// `p`: a password, SASLInitialResponse or SASLResponse, depending on the
    /// authentication phase; see [`parse_password`] and
    /// [`parse_sasl_initial_response`].
    PasswordMessage {
        data: Vec<u8>,
    },
    FunctionCall(FunctionCall),
    CopyData {
        data: Vec<u8>,
    },
    CopyDone,
    CopyFail {
        message: String,
    },
    Terminate,
}

/// The StartupMessage: protocol version and `name=value` parameters
/// (`user`, `database`, `options`, `application_name`, ...), in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartupMessage {
    pub protocol: u32,
    pub params: Vec<(String, String)>,
}

impl StartupMessage {
    /// The value of the first parameter called `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Sets (or adds) parameter `name`.
    pub fn set_param(&mut self, name: &str, value: &str) {
        match self.params.iter_mut().find(|(k, _)| k == name) {
            Some((_, v)) => *v = value.to_owned(),
            None => self.params.push((name.to_owned(), value.to_owned())),
        }
    }
}

/// Bind: a portal from a prepared statement and parameter values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub portal: String,
    pub statement: String,
    pub param_formats: Vec<i16>,
    pub params: Vec<Option<Vec<u8>>>,
    pub result_formats: Vec<i16>,
}

/// FunctionCall (`F`): calls a function by OID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionCall {
    pub function_oid: u32,
    pub arg_formats: Vec<i16>,
    pub args: Vec<Option<Vec<u8>>>,
    pub result_format: i16,
}

/// One RowDescription field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldDescription {
    pub name: String,
    pub table_oid: u32,
    pub column_attr: i16,
    pub type_oid: u32,
    pub type_size: i16,
    pub type_modifier: i32,
    pub format: i16,
}

/// A message sent by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendMessage {
    /// The single unframed byte answering an SSLRequest/GSSENCRequest
    /// (only in [`BackendPhase::EncryptionResponse`]).
    EncryptionResponse(u8),
    AuthenticationOk,
    AuthenticationKerberosV5,
    AuthenticationCleartextPassword,
    AuthenticationMd5Password {
        salt: [u8; 4],
    },
    AuthenticationGss,
    AuthenticationGssContinue {
        data: Vec<u8>,
    },
    AuthenticationSspi,
    AuthenticationSasl {
        mechanisms: Vec<String>,
    },
    AuthenticationSaslContinue {
        data: Vec<u8>,
    },
    AuthenticationSaslFinal {
        data: Vec<u8>,
    },
    ParameterStatus {
        name: String,
        value: String,
    },
    BackendKeyData {
        process_id: i32,
        secret_key: Vec<u8>,
    },
    /// Transaction status: `I` idle, `T` in a transaction, `E` failed.
    ReadyForQuery {
        status: u8,
    },
    RowDescription {
        fields: Vec<FieldDescription>,
    },
    DataRow {
        values: Vec<Option<Vec<u8>>>,
    },
    CommandComplete {
        tag: String,
    },
    ErrorResponse {
        fields: Vec<(u8, String)>,
    },
    NoticeResponse {
        fields: Vec<(u8, String)>,
    },
    ParseComplete,
    BindComplete,
    CloseComplete,
    NoData,
    ParameterDescription {
        types: Vec<u32>,
    },
    PortalSuspended,
    EmptyQueryResponse,
    CopyInResponse {
        format: i8,
        column_formats: Vec<i16>,
    },
    CopyOutResponse {
        format: i8,
        column_formats: Vec<i16>,
    },
    CopyBothResponse {
        format: i8,
        column_formats: Vec<i16>,
    },
    CopyData {
        data: Vec<u8>,
    },
    CopyDone,
    FunctionCallResponse {
        value: Option<Vec<u8>>,
    },
    NotificationResponse {
        process_id: i32,
        channel: String,
        payload: String,
    },
    NegotiateProtocolVersion {
        newest_minor: i32,
        unrecognized: Vec<String>,
    },
    /// A type this decoder does not know: kept verbatim.
    Other {
        tag: u8,
        body: Vec<u8>,
    },
}

// ---------------------------------------------------------------------------
// Framing

/// The length of the frame at the start of `buf` (type byte included), or
/// `None` if its header is not complete yet. Validates the length field.
fn frame_len(
    buf: &[u8],
    typed: bool,
    cap: impl Fn(u8) -> usize,
) -> Result<Option<(Tag, usize)>, PgError> {
    let (tag, len_at) = if typed {
        match buf.first() {
            None => return Ok(None),
            Some(&t) => (Tag(Some(t)), 1usize),
        }
    } else {
        (Tag(None), 0usize)
    };
    let Some(len_bytes) = buf.get(len_at..len_at + 4) else {
        return Ok(None);
    };
    let mut a = [0u8; 4];
    a.copy_from_slice(len_bytes);
    let len = i32::from_be_bytes(a);
    if len < 4 {
        return Err(PgError::ShortLength {
            tag,
            len: i64::from(len),
        });
    }
    let len = usize::try_from(len).map_err(|_| PgError::Malformed {
        tag,
        what: "length",
    })?;
    let max = cap(tag.0.unwrap_or(0));
    if len > max {
        return Err(PgError::TooLong { tag, len, max });
    }
    Ok(Some((tag, len_at + len)))
}

fn frontend_frame_len(
    buf: &[u8],
    phase: FrontendPhase,
    limits: &Limits,
) -> Result<Option<(Tag, usize)>, PgError> {
    match phase {
        FrontendPhase::Startup => frame_len(buf, false, |_| limits.startup),
        FrontendPhase::Normal => {
            if let Some(&t) = buf.first() {
                if !is_frontend_type(t) {
                    return Err(PgError::UnknownFrontendType(Tag(Some(t))));
                }
            }
            frame_len(buf, true, |t| limits.frontend(t))
        }
    }
}

fn backend_frame_len(
    buf: &[u8],
    phase: BackendPhase,
    limits: &Limits,
) -> Result<Option<(Tag, usize)>, PgError> {
    match phase {
        BackendPhase::EncryptionResponse => Ok(buf.first().map(|&b| (Tag(Some(b)), 1))),
        BackendPhase::Normal => frame_len(buf, true, |t| limits.backend(t)),
    }
}

/// Whether `t` is the type byte of a frontend message (after startup).
pub fn is_frontend_type(t: u8) -> bool {
    matches!(
        t,
        b'Q' | b'P'
            | b'B'
            | b'E'
            | b'D'
            | b'C'
            | b'S'
            | b'H'
            | b'p'
            | b'F'
            | b'd'
            | b'c'
            | b'f'
            | b'X'
    )
}

/// Which side of the connection a [`Framer`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Frontend(FrontendPhase),
    Backend(BackendPhase),
}

/// Splits a byte stream into complete raw frames (type byte and length
/// included), keeping the incomplete tail for the next [`Framer::push`].
///
/// A frontend framer leaves the startup phase after a StartupMessage; a
/// backend framer in [`BackendPhase::EncryptionResponse`] yields the one
/// unframed byte, then goes back to normal. After an error the stream is
/// unusable: the caller closes the connection.
#[derive(Debug, Clone)]
pub struct Framer {
    buf: Vec<u8>,
    pos: usize,
    direction: Direction,
    limits: Limits,
}

impl Framer {
    pub fn new(direction: Direction) -> Self {
        Self::with_limits(direction, Limits::DEFAULT)
    }

    pub fn with_limits(direction: Direction, limits: Limits) -> Self {
        Framer {
            buf: Vec::new(),
            pos: 0,
            direction,
            limits,
        }
    }

    /// The current direction and phase.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// Overrides the phase (e.g. the backend framer after the client sent an
    /// SSLRequest expects [`BackendPhase::EncryptionResponse`]).
    pub fn set_direction(&mut self, direction: Direction) {
        self.direction = direction;
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, data: &[u8]) {
        if self.pos > 0 && self.pos >= self.buf.len() / 2 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Bytes buffered but not yet returned as a frame.
    pub fn pending(&self) -> &[u8] {
        self.buf.get(self.pos..).unwrap_or(&[])
    }

    /// The next complete frame, if any.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, PgError> {
        let rest = self.pending();
        let found = match self.direction {
            Direction::Frontend(p) => frontend_frame_len(rest, p, &self.limits)?,
            Direction::Backend(p) => backend_frame_len(rest, p, &self.limits)?,
        };
        let Some((_, n)) = found else {
            return Ok(None);
        };
        let Some(frame) = rest.get(..n) else {
            return Ok(None);
        };
        let frame = frame.to_vec();
        self.pos += n;
        match self.direction {
            Direction::Frontend(FrontendPhase::Startup)
                if startup_code(&frame) == Some(PROTOCOL_3_0 >> 16) =>
            {
                self.direction = Direction::Frontend(FrontendPhase::Normal);
            }
            Direction::Backend(BackendPhase::EncryptionResponse) => {
                self.direction = Direction::Backend(BackendPhase::Normal);
            }
            _ => {}
        }
        Ok(Some(frame))
    }

    /// Every complete frame currently buffered.
    pub fn frames(&mut self) -> Result<Vec<Vec<u8>>, PgError> {
        let mut out = Vec::new();
        while let Some(f) = self.next_frame()? {
            out.push(f);
        }
        Ok(out)
    }
}

/// The major protocol version of an untyped startup frame, or the full
/// request code when it is one of the special requests.
fn startup_code(frame: &[u8]) -> Option<u32> {
    let c = frame.get(4..8)?;
    let mut a = [0u8; 4];
    a.copy_from_slice(c);
    let code = u32::from_be_bytes(a);
    if matches!(
        code,
        SSL_REQUEST_CODE | GSSENC_REQUEST_CODE | CANCEL_REQUEST_CODE
    ) {
        Some(code)
    } else {
        Some(code >> 16)
    }
}

// ---------------------------------------------------------------------------
// Reading

struct Reader<'a> {
    buf: &'a [u8],
    tag: Tag,
}

impl<'a> Reader<'a> {
    fn err(&self, what: &'static str) -> PgError {
        PgError::Malformed {
            tag: self.tag,
            what,
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], PgError> {
        let head = self.buf.get(..n).ok_or_else(|| self.err("truncated"))?;
        self.buf = self.buf.get(n..).unwrap_or(&[]);
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], PgError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, PgError> {
        Ok(u8::from_be_bytes(self.array()?))
    }

    fn i16(&mut self) -> Result<i16, PgError> {
        Ok(i16::from_be_bytes(self.array()?))
    }

    fn i32(&mut self) -> Result<i32, PgError> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, PgError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    /// A non-negative i16 count, with a capacity hint bounded by what is
    /// left (each element takes at least `min_size` bytes).
    fn count(&mut self, min_size: usize) -> Result<(usize, usize), PgError> {
        let n = usize::try_from(self.i16()?).map_err(|_| self.err("negative count"))?;
        let cap = n.min(self.buf.len() / min_size.max(1));
        Ok((n, cap))
    }

    fn cstr_bytes(&mut self) -> Result<&'a [u8], PgError> {
        let end = self
            .buf
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| self.err("unterminated string"))?;
        let s = self.take(end)?;
        self.take(1)?;
        Ok(s)
    }

    fn cstr(&mut self) -> Result<String, PgError> {
        let b = self.cstr_bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| self.err("string is not UTF-8"))
    }

    fn cstr_lossy(&mut self) -> Result<String, PgError> {
        Ok(String::from_utf8_lossy(self.cstr_bytes()?).into_owned())
    }

    /// An i32-length-prefixed value, -1 meaning NULL.
    fn nullable(&mut self) -> Result<Option<Vec<u8>>, PgError> {
        let len = self.i32()?;
        if len == -1 {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| self.err("negative value length"))?;
        Ok(Some(self.take(len)?.to_vec()))
    }

    fn rest(&mut self) -> Vec<u8> {
        let r = self.buf.to_vec();
        self.buf = &[];
        r
    }

    fn i16_list(&mut self) -> Result<Vec<i16>, PgError> {
        let (n, cap) = self.count(2)?;
        let mut v = Vec::with_capacity(cap);
        for _ in 0..n {
            v.push(self.i16()?);
        }
        Ok(v)
    }

    fn nullable_list(&mut self) -> Result<Vec<Option<Vec<u8>>>, PgError> {
        let (n, cap) = self.count(4)?;
        let mut v = Vec::with_capacity(cap);
        for _ in 0..n {
            v.push(self.nullable()?);
        }
        Ok(v)
    }

    fn end(&self) -> Result<(), PgError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(self.err("trailing bytes"))
        }
    }
}

/// Decodes the frontend message at the start of `buf` with the default caps.
/// `Ok(None)`: incomplete, nothing consumed.
pub fn decode_frontend(
    buf: &[u8],
    phase: FrontendPhase,
) -> Result<Option<(FrontendMessage, usize)>, PgError> {
    decode_frontend_with(buf, phase, &Limits::DEFAULT)
}

/// [`decode_frontend`] with explicit caps.
pub fn decode_frontend_with(
    buf: &[u8],
    phase: FrontendPhase,
    limits: &Limits,
) -> Result<Option<(FrontendMessage, usize)>, PgError> {
    let Some((tag, n)) = frontend_frame_len(buf, phase, limits)? else {
        return Ok(None);
    };
    let Some(frame) = buf.get(..n) else {
        return Ok(None);
    };
    let body_at = if tag.0.is_some() { 5 } else { 4 };
    let mut r = Reader {
        buf: frame.get(body_at..).unwrap_or(&[]),
        tag,
    };
    let msg = match tag.0 {
        None => decode_startup(&mut r)?,
        Some(t) => decode_frontend_body(t, &mut r)?,
    };
    r.end()?;
    Ok(Some((msg, n)))
}

fn decode_startup(r: &mut Reader<'_>) -> Result<FrontendMessage, PgError> {
    let code = r.u32()?;
    Ok(match code {
        SSL_REQUEST_CODE => FrontendMessage::SslRequest,
        GSSENC_REQUEST_CODE => FrontendMessage::GssEncRequest,
        CANCEL_REQUEST_CODE => FrontendMessage::CancelRequest {
            process_id: r.i32()?,
            secret_key: r.rest(),
        },
        c if c >> 16 == 3 => {
            let mut params = Vec::new();
            loop {
                let k = r.cstr()?;
                if k.is_empty() {
                    break;
                }
                let v = r.cstr()?;
                params.push((k, v));
            }
            FrontendMessage::Startup(StartupMessage {
                protocol: c,
                params,
            })
        }
        c => return Err(PgError::UnknownStartupCode(c)),
    })
}

fn decode_frontend_body(t: u8, r: &mut Reader<'_>) -> Result<FrontendMessage, PgError> {
    Ok(match t {
        b'Q' => FrontendMessage::Query { sql: r.cstr()? },
        b'P' => {
            let name = r.cstr()?;
            let query = r.cstr()?;
            let (n, cap) = r.count(4)?;
            let mut param_types = Vec::with_capacity(cap);
            for _ in 0..n {
                param_types.push(r.u32()?);
            }
            FrontendMessage::Parse {
                name,
                query,
                param_types,
            }
        }
        b'B' => FrontendMessage::Bind(Bind {
            portal: r.cstr()?,
            statement: r.cstr()?,
            param_formats: r.i16_list()?,
            params: r.nullable_list()?,
            result_formats: r.i16_list()?,
        }),
        b'E' => FrontendMessage::Execute {
            portal: r.cstr()?,
            max_rows: r.i32()?,
        },
        b'D' | b'C' => {
            let kind = match r.u8()? {
                b'S' => TargetKind::Statement,
                b'P' => TargetKind::Portal,
                _ => return Err(r.err("target is neither 'S' nor 'P'")),
            };
            let name = r.cstr()?;
            if t == b'D' {
                FrontendMessage::Describe { kind, name }
            } else {
                FrontendMessage::Close { kind, name }
            }
        }
        b'S' => FrontendMessage::Sync,
        b'H' => FrontendMessage::Flush,
        b'p' => FrontendMessage::PasswordMessage { data: r.rest() },
        b'F' => FrontendMessage::FunctionCall(FunctionCall {
            function_oid: r.u32()?,
            arg_formats: r.i16_list()?,
            args: r.nullable_list()?,
            result_format: r.i16()?,
        }),
        b'd' => FrontendMessage::CopyData { data: r.rest() },
        b'c' => FrontendMessage::CopyDone,
        b'f' => FrontendMessage::CopyFail { message: r.cstr()? },
        b'X' => FrontendMessage::Terminate,
        _ => return Err(PgError::UnknownFrontendType(Tag(Some(t)))),
    })
}

/// Decodes the backend message at the start of `buf` with the default caps.
/// `Ok(None)`: incomplete, nothing consumed.
pub fn decode_backend(
    buf: &[u8],
    phase: BackendPhase,
) -> Result<Option<(BackendMessage, usize)>, PgError> {
    decode_backend_with(buf, phase, &Limits::DEFAULT)
}

/// [`decode_backend`] with explicit caps.
pub fn decode_backend_with(
    buf: &[u8],
    phase: BackendPhase,
    limits: &Limits,
) -> Result<Option<(BackendMessage, usize)>, PgError> {
    if phase == BackendPhase::EncryptionResponse {
        return Ok(buf
            .first()
            .map(|&b| (BackendMessage::EncryptionResponse(b), 1)));
    }
    let Some((tag, n)) = backend_frame_len(buf, phase, limits)? else {
        return Ok(None);
    };
    let Some(frame) = buf.get(..n) else {
        return Ok(None);
    };
    let mut r = Reader {
        buf: frame.get(5..).unwrap_or(&[]),
        tag,
    };
    let msg = decode_backend_body(tag.0.unwrap_or(0), &mut r)?;
    r.end()?;
    Ok(Some((msg, n)))
}

fn decode_backend_body(t: u8, r: &mut Reader<'_>) -> Result<BackendMessage, PgError> {
    use BackendMessage as B;
    Ok(match t {
        b'R' => match r.i32()? {
            0 => B::AuthenticationOk,
            2 => B::AuthenticationKerberosV5,
            3 => B::AuthenticationCleartextPassword,
            5 => B::AuthenticationMd5Password { salt: r.array()? },
            7 => B::AuthenticationGss,
            8 => B::AuthenticationGssContinue { data: r.rest() },
            9 => B::AuthenticationSspi,
            10 => {
                let mut mechanisms = Vec::new();
                loop {
                    let m = r.cstr_lossy()?;
                    if m.is_empty() {
                        break;
                    }
                    mechanisms.push(m);
                }
                B::AuthenticationSasl { mechanisms }
            }
            11 => B::AuthenticationSaslContinue { data: r.rest() },
            12 => B::AuthenticationSaslFinal { data: r.rest() },
            _ => return Err(r.err("unknown authentication request")),
        },
        b'S' => B::ParameterStatus {
            name: r.cstr_lossy()?,
            value: r.cstr_lossy()?,
        },
        b'K' => B::BackendKeyData {
            process_id: r.i32()?,
            secret_key: r.rest(),
        },
        b'Z' => B::ReadyForQuery { status: r.u8()? },
        b'T' => {
            let (n, cap) = r.count(19)?;
            let mut fields = Vec::with_capacity(cap);
            for _ in 0..n {
                fields.push(FieldDescription {
                    name: r.cstr_lossy()?,
                    table_oid: r.u32()?,
                    column_attr: r.i16()?,
                    type_oid: r.u32()?,
                    type_size: r.i16()?,
                    type_modifier: r.i32()?,
                    format: r.i16()?,
                });
            }
            B::RowDescription { fields }
        }
        b'D' => B::DataRow {
            values: r.nullable_list()?,
        },
        b'C' => B::CommandComplete {
            tag: r.cstr_lossy()?,
        },
        b'E' | b'N' => {
            let mut fields = Vec::new();
            loop {
                let code = r.u8()?;
                if code == 0 {
                    break;
                }
                fields.push((code, r.cstr_lossy()?));
            }
            if t == b'E' {
                B::ErrorResponse { fields }
            } else {
                B::NoticeResponse { fields }
            }
        }
        b'1' => B::ParseComplete,
        b'2' => B::BindComplete,
        b'3' => B::CloseComplete,
        b'n' => B::NoData,
        b't' => {
            let (n, cap) = r.count(4)?;
            let mut types = Vec::with_capacity(cap);
            for _ in 0..n {
                types.push(r.u32()?);
            }
            B::ParameterDescription { types }
        }
        b's' => B::PortalSuspended,
        b'I' => B::EmptyQueryResponse,
        b'G' | b'H' | b'W' => {
            let format = i8::from_be_bytes(r.array()?);
            let column_formats = r.i16_list()?;
            match t {
                b'G' => B::CopyInResponse {
                    format,
                    column_formats,
                },
                b'H' => B::CopyOutResponse {
                    format,
                    column_formats,
                },
                _ => B::CopyBothResponse {
                    format,
                    column_formats,
                },
            }
        }
        b'd' => B::CopyData { data: r.rest() },
        b'c' => B::CopyDone,
        b'V' => B::FunctionCallResponse {
            value: r.nullable()?,
        },
        b'A' => B::NotificationResponse {
            process_id: r.i32()?,
            channel: r.cstr_lossy()?,
            payload: r.cstr_lossy()?,
        },
        b'v' => {
            let newest_minor = r.i32()?;
            let n = usize::try_from(r.i32()?).map_err(|_| r.err("negative count"))?;
            let mut unrecognized = Vec::with_capacity(n.min(r.buf.len()));
            for _ in 0..n {
                unrecognized.push(r.cstr_lossy()?);
            }
            B::NegotiateProtocolVersion {
                newest_minor,
                unrecognized,
            }
        }
        _ => B::Other {
            tag: t,
            body: r.rest(),
        },
    })
}

// ---------------------------------------------------------------------------
// Writing

/// Builds one message: type byte (if any), length placeholder, body.
struct Writer {
    out: Vec<u8>,
    len_at: usize,
}

impl Writer {
    fn typed(tag: u8) -> Self {
        Writer {
            out: vec![tag, 0, 0, 0, 0],
            len_at: 1,
        }
    }

    fn untyped() -> Self {
        Writer {
            out: vec![0, 0, 0, 0],
            len_at: 0,
        }
    }

    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.out.extend_from_slice(b);
        self
    }

    fn u8(&mut self, v: u8) -> &mut Self {
        self.out.push(v);
        self
    }

    fn i16(&mut self, v: i16) -> &mut Self {
        self.bytes(&v.to_be_bytes())
    }

    fn i32(&mut self, v: i32) -> &mut Self {
        self.bytes(&v.to_be_bytes())
    }

    fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes(&v.to_be_bytes())
    }

    /// A C string; an interior NUL would corrupt the frame, so the string is
    /// cut at the first one.
    fn cstr(&mut self, s: &str) -> &mut Self {
        let b = s.as_bytes();
        let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
        self.bytes(b.get(..end).unwrap_or(&[])).u8(0)
    }

    /// An i16 count; lists longer than `i16::MAX` are cut (the protocol
    /// cannot carry them).
    fn count(&mut self, n: usize) -> usize {
        let n = n.min(i16::MAX as usize);
        self.i16(i16::try_from(n).unwrap_or(i16::MAX));
        n
    }

    fn i16_list(&mut self, v: &[i16]) -> &mut Self {
        let n = self.count(v.len());
        for x in v.iter().take(n) {
            self.i16(*x);
        }
        self
    }

    fn nullable(&mut self, v: &Option<Vec<u8>>) -> &mut Self {
        match v {
            None => self.i32(-1),
            Some(b) => self
                .i32(i32::try_from(b.len()).unwrap_or(i32::MAX))
                .bytes(b),
        }
    }

    fn nullable_list(&mut self, v: &[Option<Vec<u8>>]) -> &mut Self {
        let n = self.count(v.len());
        for x in v.iter().take(n) {
            self.nullable(x);
        }
        self
    }

    fn finish(&mut self) -> Vec<u8> {
        let len = self.out.len().saturating_sub(self.len_at);
        let len = i32::try_from(len).unwrap_or(i32::MAX).to_be_bytes();
        if let Some(slot) = self.out.get_mut(self.len_at..self.len_at + 4) {
            slot.copy_from_slice(&len);
        }
        std::mem::take(&mut self.out)
    }
}

impl FrontendMessage {
    /// The phase after this message was sent in `phase`.
    pub fn next_phase(&self, phase: FrontendPhase) -> FrontendPhase {
        match self {
            FrontendMessage::Startup(_) => FrontendPhase::Normal,
            FrontendMessage::SslRequest
            | FrontendMessage::GssEncRequest
            | FrontendMessage::CancelRequest { .. } => FrontendPhase::Startup,
            _ => phase,
        }
    }

    /// The wire bytes of this message.
    pub fn encode(&self) -> Vec<u8> {
        use FrontendMessage as F;
        match self {
            F::SslRequest => Writer::untyped().u32(SSL_REQUEST_CODE).finish(),
            F::GssEncRequest => Writer::untyped().u32(GSSENC_REQUEST_CODE).finish(),
            F::CancelRequest {
                process_id,
                secret_key,
            } => Writer::untyped()
                .u32(CANCEL_REQUEST_CODE)
                .i32(*process_id)
                .bytes(secret_key)
                .finish(),
            F::Startup(s) => {
                let mut w = Writer::untyped();
                w.u32(s.protocol);
                for (k, v) in &s.params {
                    w.cstr(k).cstr(v);
                }
                w.u8(0).finish()
            }
            F::Query { sql } => Writer::typed(b'Q').cstr(sql).finish(),
            F::Parse {
                name,
                query,
                param_types,
            } => {
                let mut w = Writer::typed(b'P');
                w.cstr(name).cstr(query);
                let n = w.count(param_types.len());
                for t in param_types.iter().take(n) {
                    w.u32(*t);
                }
                w.finish()
            }
            F::Bind(b) => Writer::typed(b'B')
                .cstr(&b.portal)
                .cstr(&b.statement)
                .i16_list(&b.param_formats)
                .nullable_list(&b.params)
                .i16_list(&b.result_formats)
                .finish(),
            F::Execute { portal, max_rows } => {
                Writer::typed(b'E').cstr(portal).i32(*max_rows).finish()
            }
            F::Describe { kind, name } => Writer::typed(b'D').u8(kind.byte()).cstr(name).finish(),
            F::Close { kind, name } => Writer::typed(b'C').u8(kind.byte()).cstr(name).finish(),
            F::Sync => Writer::typed(b'S').finish(),
            F::Flush => Writer::typed(b'H').finish(),
            F::PasswordMessage { data } => Writer::typed(b'p').bytes(data).finish(),
            F::FunctionCall(f) => Writer::typed(b'F')
                .u32(f.function_oid)
                .i16_list(&f.arg_formats)
                .nullable_list(&f.args)
                .i16(f.result_format)
                .finish(),
            F::CopyData { data } => Writer::typed(b'd').bytes(data).finish(),
            F::CopyDone => Writer::typed(b'c').finish(),
            F::CopyFail { message } => Writer::typed(b'f').cstr(message).finish(),
            F::Terminate => Writer::typed(b'X').finish(),
        }
    }
}

fn auth(code: i32) -> Writer {
    let mut w = Writer::typed(b'R');
    w.i32(code);
    w
}

impl BackendMessage {
    /// The wire bytes of this message.
    pub fn encode(&self) -> Vec<u8> {
        use BackendMessage as B;
        match self {
            B::EncryptionResponse(b) => vec![*b],
            B::AuthenticationOk => auth(0).finish(),
            B::AuthenticationKerberosV5 => auth(2).finish(),
            B::AuthenticationCleartextPassword => auth(3).finish(),
            B::AuthenticationMd5Password { salt } => auth(5).bytes(salt).finish(),
            B::AuthenticationGss => auth(7).finish(),
            B::AuthenticationGssContinue { data } => auth(8).bytes(data).finish(),
            B::AuthenticationSspi => auth(9).finish(),
            B::AuthenticationSasl { mechanisms } => {
                let mut w = auth(10);
                for m in mechanisms.iter().filter(|m| !m.is_empty()) {
                    w.cstr(m);
                }
                w.u8(0).finish()
            }
            B::AuthenticationSaslContinue { data } => auth(11).bytes(data).finish(),
            B::AuthenticationSaslFinal { data } => auth(12).bytes(data).finish(),
            B::ParameterStatus { name, value } => {
                Writer::typed(b'S').cstr(name).cstr(value).finish()
            }
            B::BackendKeyData {
                process_id,
                secret_key,
            } => Writer::typed(b'K')
                .i32(*process_id)
                .bytes(secret_key)
                .finish(),
            B::ReadyForQuery { status } => Writer::typed(b'Z').u8(*status).finish(),
            B::RowDescription { fields } => {
                let mut w = Writer::typed(b'T');
                let n = w.count(fields.len());
                for f in fields.iter().take(n) {
                    w.cstr(&f.name)
                        .u32(f.table_oid)
                        .i16(f.column_attr)
                        .u32(f.type_oid)
                        .i16(f.type_size)
                        .i32(f.type_modifier)
                        .i16(f.format);
                }
                w.finish()
            }
            B::DataRow { values } => Writer::typed(b'D').nullable_list(values).finish(),
            B::CommandComplete { tag } => Writer::typed(b'C').cstr(tag).finish(),
            B::ErrorResponse { fields } => error_fields(b'E', fields),
            B::NoticeResponse { fields } => error_fields(b'N', fields),
            B::ParseComplete => Writer::typed(b'1').finish(),
            B::BindComplete => Writer::typed(b'2').finish(),
            B::CloseComplete => Writer::typed(b'3').finish(),
            B::NoData => Writer::typed(b'n').finish(),
            B::ParameterDescription { types } => {
                let mut w = Writer::typed(b't');
                let n = w.count(types.len());
                for t in types.iter().take(n) {
                    w.u32(*t);
                }
                w.finish()
            }
            B::PortalSuspended => Writer::typed(b's').finish(),
            B::EmptyQueryResponse => Writer::typed(b'I').finish(),
            B::CopyInResponse {
                format,
                column_formats,
            } => copy_response(b'G', *format, column_formats),
            B::CopyOutResponse {
                format,
                column_formats,
            } => copy_response(b'H', *format, column_formats),
            B::CopyBothResponse {
                format,
                column_formats,
            } => copy_response(b'W', *format, column_formats),
            B::CopyData { data } => Writer::typed(b'd').bytes(data).finish(),
            B::CopyDone => Writer::typed(b'c').finish(),
            B::FunctionCallResponse { value } => Writer::typed(b'V').nullable(value).finish(),
            B::NotificationResponse {
                process_id,
                channel,
                payload,
            } => Writer::typed(b'A')
                .i32(*process_id)
                .cstr(channel)
                .cstr(payload)
                .finish(),
            B::NegotiateProtocolVersion {
                newest_minor,
                unrecognized,
            } => {
                let mut w = Writer::typed(b'v');
                w.i32(*newest_minor)
                    .i32(i32::try_from(unrecognized.len()).unwrap_or(i32::MAX));
                for u in unrecognized {
                    w.cstr(u);
                }
                w.finish()
            }
            B::Other { tag, body } => Writer::typed(*tag).bytes(body).finish(),
        }
    }
}

fn error_fields(tag: u8, fields: &[(u8, String)]) -> Vec<u8> {
    let mut w = Writer::typed(tag);
    for (code, value) in fields.iter().filter(|(c, _)| *c != 0) {
        w.u8(*code).cstr(value);
    }
    w.u8(0).finish()
}

fn copy_response(tag: u8, format: i8, column_formats: &[i16]) -> Vec<u8> {
    Writer::typed(tag)
        .bytes(&format.to_be_bytes())
        .i16_list(column_formats)
        .finish()
}

// ---------------------------------------------------------------------------
// Builders and password-message payloads

/// An ErrorResponse with severity (`S` and `V`), SQLSTATE (`C`) and message
/// (`M`).
pub fn error_response(severity: &str, sqlstate: &str, message: &str) -> Vec<u8> {
    BackendMessage::ErrorResponse {
        fields: vec![
            (b'S', severity.to_owned()),
            (b'V', severity.to_owned()),
            (b'C', sqlstate.to_owned()),
            (b'M', message.to_owned()),
        ],
    }
    .encode()
}

/// `AuthenticationCleartextPassword`.
pub fn authentication_cleartext_password() -> Vec<u8> {
    BackendMessage::AuthenticationCleartextPassword.encode()
}

/// `ReadyForQuery` with transaction status `I`, `T` or `E`.
pub fn ready_for_query(status: u8) -> Vec<u8> {
    BackendMessage::ReadyForQuery { status }.encode()
}

/// A PasswordMessage carrying a cleartext (or md5) password.
pub fn password_message(password: &str) -> Vec<u8> {
    let mut data = password.as_bytes().to_vec();
    data.push(0);
    FrontendMessage::PasswordMessage { data }.encode()
}

/// A SASLInitialResponse: mechanism, then the initial client response.
pub fn sasl_initial_response(mechanism: &str, initial: &[u8]) -> Vec<u8> {
    let mut data = mechanism.as_bytes().to_vec();
    data.push(0);
    data.extend_from_slice(
        &i32::try_from(initial.len())
            .unwrap_or(i32::MAX)
            .to_be_bytes(),
    );
    data.extend_from_slice(initial);
    FrontendMessage::PasswordMessage { data }.encode()
}

/// A SASLResponse.
pub fn sasl_response(data: &[u8]) -> Vec<u8> {
    FrontendMessage::PasswordMessage {
        data: data.to_vec(),
    }
    .encode()
}

/// The password in a PasswordMessage answering a cleartext request.
pub fn parse_password(data: &[u8]) -> Result<String, PgError> {
    let mut r = Reader {
        buf: data,
        tag: Tag(Some(b'p')),
    };
    let s = r.cstr()?;
    r.end()?;
    Ok(s)
}

/// `(mechanism, initial response)` of a SASLInitialResponse (-1 length: no
/// initial response).
pub fn parse_sasl_initial_response(data: &[u8]) -> Result<(String, Option<Vec<u8>>), PgError> {
    let mut r = Reader {
        buf: data,
        tag: Tag(Some(b'p')),
    };
    let mechanism = r.cstr()?;
    let initial = r.nullable()?;
    r.end()?;
    Ok((mechanism, initial))
}

/// The `md5...` answer to `AuthenticationMD5Password`:
/// `"md5" + md5hex(md5hex(password + user) + salt)`.
pub fn md5_password(user: &str, password: &str, salt: [u8; 4]) -> String {
    use md5::{Digest, Md5};
    let inner = hex(&Md5::new()
        .chain_update(password.as_bytes())
        .chain_update(user.as_bytes())
        .finalize());
    let outer = Md5::new()
        .chain_update(inner.as_bytes())
        .chain_update(salt)
        .finalize();
    format!("md5{}", hex(&outer))
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// A simple-protocol `Query`.
pub fn query(sql: &str) -> Vec<u8> {
    FrontendMessage::Query {
        sql: sql.to_owned(),
    }
    .encode()
}

/// `Parse` of `sql` (no parameter types) into statement `name`.
pub fn parse(name: &str, sql: &str) -> Vec<u8> {
    FrontendMessage::Parse {
        name: name.to_owned(),
        query: sql.to_owned(),
        param_types: Vec::new(),
    }
    .encode()
}

/// `Bind` of statement `statement` (no parameters, text results) to
/// portal `portal`.
pub fn bind(portal: &str, statement: &str) -> Vec<u8> {
    FrontendMessage::Bind(Bind {
        portal: portal.to_owned(),
        statement: statement.to_owned(),
        param_formats: Vec::new(),
        params: Vec::new(),
        result_formats: Vec::new(),
    })
    .encode()
}

/// `Execute` of portal `portal`, all rows.
pub fn execute(portal: &str) -> Vec<u8> {
    FrontendMessage::Execute {
        portal: portal.to_owned(),
        max_rows: 0,
    }
    .encode()
}

/// `Close` of a statement or portal.
pub fn close(kind: TargetKind, name: &str) -> Vec<u8> {
    FrontendMessage::Close {
        kind,
        name: name.to_owned(),
    }
    .encode()
}

// ---------------------------------------------------------------------------
// Borrowed views of whole frontend frames (the hot path: no copies)

/// The NUL-terminated UTF-8 string at `at`, and the offset after it.
fn cstr_at(frame: &[u8], at: usize) -> Option<(&str, usize)> {
    let rest = frame.get(at..)?;
    let nul = rest.iter().position(|&b| b == 0)?;
    let s = std::str::from_utf8(rest.get(..nul)?).ok()?;
    Some((s, at + nul + 1))
}

/// The SQL of a whole `Query` frame (exactly one string, nothing after).
pub fn query_view(frame: &[u8]) -> Option<&str> {
    if frame.first() != Some(&b'Q') {
        return None;
    }
    let (sql, end) = cstr_at(frame, 5)?;
    (end == frame.len()).then_some(sql)
}

/// `(statement name, SQL)` of a whole `Parse` frame.
pub fn parse_view(frame: &[u8]) -> Option<(&str, &str)> {
    if frame.first() != Some(&b'P') {
        return None;
    }
    let (name, at) = cstr_at(frame, 5)?;
    let (sql, _) = cstr_at(frame, at)?;
    Some((name, sql))
}

/// `(portal, statement name)` of a whole `Bind` frame.
pub fn bind_view(frame: &[u8]) -> Option<(&str, &str)> {
    if frame.first() != Some(&b'B') {
        return None;
    }
    let (portal, at) = cstr_at(frame, 5)?;
    let (statement, _) = cstr_at(frame, at)?;
    Some((portal, statement))
}

/// The portal of a whole `Execute` frame.
pub fn execute_view(frame: &[u8]) -> Option<&str> {
    if frame.first() != Some(&b'E') {
        return None;
    }
    let (portal, end) = cstr_at(frame, 5)?;
    (frame.len() == end + 4).then_some(portal)
}

/// `Describe` of a statement or portal.
pub fn describe(kind: TargetKind, name: &str) -> Vec<u8> {
    FrontendMessage::Describe {
        kind,
        name: name.to_owned(),
    }
    .encode()
}
