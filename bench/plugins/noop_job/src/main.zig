//! bench: the no-op [[job]] handler of the queue benchmark. It leaves the job
//! envelope unread and succeeds with `{}`, so what is measured is the queue and
//! the call into the guest, not the handler.
const arcana = @import("arcana");

export fn noop() i32 {
    arcana.output("{}");
    return 0;
}
