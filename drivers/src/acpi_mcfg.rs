//! x86: ECAM windows from the ACPI MCFG table (q35 has one, 256 buses at
//! 0xb0000000). Tables are reached through the RSDP address the boot
//! protocol hands over (PVH `rsdp_paddr`), identity-mapped.

use acpi::{mcfg::Mcfg, AcpiHandler, AcpiTables, PhysicalMapping};
use alloc::vec::Vec;
use core::ptr::NonNull;

/// One MCFG allocation: the ECAM base of `bus_start..=bus_end` of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EcamRegion {
    pub base: u64,
    pub segment: u16,
    pub bus_start: u8,
    pub bus_end: u8,
}

/// Reads tables where they are: the kernel maps all of RAM (and the
/// firmware's tables live in RAM) at phys == virt.
#[derive(Clone, Copy)]
pub struct IdentityAcpiHandler;

impl AcpiHandler for IdentityAcpiHandler {
    unsafe fn map_physical_region<T>(
        &self,
        physical_address: usize,
        size: usize,
    ) -> PhysicalMapping<Self, T> {
        let virt = NonNull::new(physical_address as *mut T).unwrap_or(NonNull::dangling());
        // SAFETY: identity mapping; the region is the one asked for.
        unsafe { PhysicalMapping::new(physical_address, virt, size, size, *self) }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
}

#[derive(Debug)]
pub struct McfgError(pub acpi::AcpiError);

impl core::fmt::Display for McfgError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "ACPI MCFG not usable: {:?}", self.0)
    }
}

/// The ECAM regions listed in MCFG.
///
/// # Safety
/// `rsdp` must be the physical address of the firmware's RSDP, with every
/// table it points to identity-mapped.
pub unsafe fn ecam_regions(rsdp: usize) -> Result<Vec<EcamRegion>, McfgError> {
    // SAFETY: forwarded from the caller.
    let tables = unsafe { AcpiTables::from_rsdp(IdentityAcpiHandler, rsdp) }.map_err(McfgError)?;
    let mcfg = tables.find_table::<Mcfg>().map_err(McfgError)?;
    Ok(mcfg
        .get()
        .entries()
        .iter()
        .map(|e| EcamRegion {
            base: e.base_address,
            segment: e.pci_segment_group,
            bus_start: e.bus_number_start,
            bus_end: e.bus_number_end,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checksum_fix(bytes: &mut [u8], at: usize) {
        let sum = bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b));
        bytes[at] = bytes[at].wrapping_sub(sum);
    }

    fn sdt(signature: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut t = vec![0u8; 36];
        t[0..4].copy_from_slice(signature);
        t[4..8].copy_from_slice(&((36 + body.len()) as u32).to_le_bytes());
        t[8] = 1;
        t[10..16].copy_from_slice(b"MKTEST");
        t.extend_from_slice(body);
        checksum_fix(&mut t, 9);
        t
    }

    /// XSDP (revision 2) -> XSDT -> MCFG with the q35 window, built in
    /// host memory (the host's addresses stand in for physical ones).
    #[test]
    fn finds_q35_ecam_window() {
        let mut entry = Vec::new();
        entry.extend(0xb000_0000u64.to_le_bytes());
        entry.extend(0u16.to_le_bytes());
        entry.push(0);
        entry.push(255);
        entry.extend([0u8; 4]);
        let mut body = vec![0u8; 8];
        body.extend(entry);
        let mcfg = Box::leak(sdt(b"MCFG", &body).into_boxed_slice());
        let xsdt =
            Box::leak(sdt(b"XSDT", &(mcfg.as_ptr() as u64).to_le_bytes()).into_boxed_slice());
        let mut rsdp = vec![0u8; 36];
        rsdp[0..8].copy_from_slice(b"RSD PTR ");
        rsdp[9..15].copy_from_slice(b"MKTEST");
        rsdp[15] = 2;
        rsdp[20..24].copy_from_slice(&36u32.to_le_bytes());
        rsdp[24..32].copy_from_slice(&(xsdt.as_ptr() as u64).to_le_bytes());
        checksum_fix(&mut rsdp[..20], 8);
        checksum_fix(&mut rsdp, 32);
        let rsdp = Box::leak(rsdp.into_boxed_slice());
        let regions = unsafe { ecam_regions(rsdp.as_ptr() as usize) }.unwrap();
        assert_eq!(
            regions,
            vec![EcamRegion {
                base: 0xb000_0000,
                segment: 0,
                bus_start: 0,
                bus_end: 255
            }]
        );
        // A corrupted table is an error, not a crash.
        rsdp[0] = b'X';
        assert!(unsafe { ecam_regions(rsdp.as_ptr() as usize) }.is_err());
    }
}
