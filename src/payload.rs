//! The answer of a task: a context and a body, in one buffer.
//!
//! Both parts are read from the relay straight into a single allocation (context
//! first, then body), so an answer costs one heap buffer.

/// A worker's answer (or, on the worker side, a task): context and body bytes.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Payload {
    bytes: Vec<u8>,
    context_len: usize,
}

impl Payload {
    /// A payload made of copies of `context` and `body`.
    pub fn new(context: &[u8], body: &[u8]) -> Payload {
        let mut bytes = Vec::with_capacity(context.len() + body.len());
        bytes.extend_from_slice(context);
        bytes.extend_from_slice(body);
        Payload { bytes, context_len: context.len() }
    }

    /// A payload over `bytes`, whose first `context_len` bytes are the context.
    pub(crate) fn from_parts(bytes: Vec<u8>, context_len: usize) -> Payload {
        debug_assert!(context_len <= bytes.len());
        Payload { bytes, context_len }
    }

    /// The context (header) bytes.
    pub fn context(&self) -> &[u8] {
        &self.bytes[..self.context_len]
    }

    /// The body bytes.
    pub fn body(&self) -> &[u8] {
        &self.bytes[self.context_len..]
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
