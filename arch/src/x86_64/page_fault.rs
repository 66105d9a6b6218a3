//! x86 page-fault error codes in words (portable, so the host tests cover
//! the decoding the trap report relies on). Bits per Intel SDM vol. 3 §4.7:
//! P(0) = protection violation (else not present), W(1) = write, U(2) = user,
//! RSVD(3) = reserved bit set, I/D(4) = instruction fetch.

use crate::frame_alloc::PAGE_SIZE;

/// Cause of a page fault with error code `error` at `addr`; `in_guard` says
/// whether `addr` lies in a registered stack guard page.
pub fn page_fault_cause(error: u64, addr: u64, in_guard: bool) -> &'static str {
    let present = error & 1 != 0;
    let write = error & 2 != 0;
    let fetch = error & 16 != 0;
    if in_guard {
        return "stack overflow: access to the guard page below a stack";
    }
    if error & 8 != 0 {
        return "reserved bit set in a page table entry";
    }
    match (present, write, fetch) {
        (true, _, true) => "instruction fetch from a no-execute page",
        (false, _, true) => "instruction fetch from an unmapped page",
        (true, true, _) => "write to a read-only page",
        (false, _, _) if addr < PAGE_SIZE => "access to an unmapped page (null pointer)",
        (false, true, _) => "write to an unmapped page",
        (false, false, _) => "read of an unmapped page",
        (true, false, _) => "protection violation on read",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_self_test_faults() {
        // Error codes observed in the boot self-tests.
        assert_eq!(
            page_fault_cause(0x3, 0x101000, false),
            "write to a read-only page"
        );
        assert_eq!(
            page_fault_cause(0x11, 0x115000, false),
            "instruction fetch from a no-execute page"
        );
        assert_eq!(
            page_fault_cause(0x0, 0, false),
            "access to an unmapped page (null pointer)"
        );
        assert_eq!(
            page_fault_cause(0x2, 0x173e10, true),
            "stack overflow: access to the guard page below a stack"
        );
    }

    #[test]
    fn other_combinations() {
        assert_eq!(
            page_fault_cause(0x0, 0x5000, false),
            "read of an unmapped page"
        );
        assert_eq!(
            page_fault_cause(0x2, 0x5000, false),
            "write to an unmapped page"
        );
        assert_eq!(
            page_fault_cause(0x10, 0x5000, false),
            "instruction fetch from an unmapped page"
        );
        assert_eq!(
            page_fault_cause(0x9, 0x5000, false),
            "reserved bit set in a page table entry"
        );
        assert_eq!(
            page_fault_cause(0x1, 0x5000, false),
            "protection violation on read"
        );
        // A write into page 0 that is not present is still the null pointer case.
        assert_eq!(
            page_fault_cause(0x2, 8, false),
            "access to an unmapped page (null pointer)"
        );
    }
}
