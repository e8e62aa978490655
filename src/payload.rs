//! The answer of a task: a context and a body, in one buffer.
//!
//! Both parts are read from the relay straight into a single allocation (context
//! first, then body), so an answer costs one heap buffer.

/// A worker's answer (or, on the worker side, a task): context and body bytes, and
/// the codec the answer carried (protocol V2).
#[derive(Clone, PartialEq, Eq)]
pub struct Payload {
    bytes: Vec<u8>,
    context_len: usize,
    codec: u8,
}

impl Default for Payload {
    fn default() -> Payload {
        Payload { bytes: Vec::new(), context_len: 0, codec: crate::config::codec::RAW }
    }
}

impl Payload {
    /// A payload made of copies of `context` and `body`.
    pub fn new(context: &[u8], body: &[u8]) -> Payload {
        let mut bytes = Vec::with_capacity(context.len() + body.len());
        bytes.extend_from_slice(context);
        bytes.extend_from_slice(body);
        Payload { bytes, context_len: context.len(), codec: crate::config::codec::RAW }
    }

    /// A payload over `bytes`, whose first `context_len` bytes are the context.
    pub(crate) fn from_parts(bytes: Vec<u8>, context_len: usize) -> Payload {
        debug_assert!(context_len <= bytes.len());
        Payload { bytes, context_len, codec: crate::config::codec::RAW }
    }

    /// The same payload, carrying `codec` (the codec bits of a V2 answer's flags).
    pub(crate) fn with_codec(mut self, codec: u8) -> Payload {
        self.codec = codec;
        self
    }

    /// Appends the body of a later chunk of a streamed answer.
    pub(crate) fn append_body(&mut self, chunk: &Payload) {
        self.bytes.extend_from_slice(chunk.body());
    }

    /// The context (header) bytes.
    pub fn context(&self) -> &[u8] {
        &self.bytes[..self.context_len]
    }

    /// The body bytes.
    pub fn body(&self) -> &[u8] {
        &self.bytes[self.context_len..]
    }

    /// The codec of the answer: with protocol V2, the codec bits of its frame's flags
    /// (0 when the worker set none, as RoadRunner's PHP worker 3.4 does); with V1, RAW.
    pub fn codec(&self) -> u8 {
        self.codec
    }
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Payload")
            .field("context", &String::from_utf8_lossy(self.context()))
            .field("body_len", &self.body().len())
            .finish()
    }
}
