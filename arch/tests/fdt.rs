//! FDT reader against device trees dumped by QEMU 7.2
//! (`qemu-system-aarch64 -M virt,dumpdtb=F -nodefaults -kernel empty ...`,
//! trimmed to the end of the strings block; see tests/fixtures/README.md),
//! plus malformed blobs that must be refused without panicking.

use arch::fdt::{Cells, Fdt, FdtError, MemRegion, RangeEntry, RegEntry};

const MAX_256M: &[u8] = include_bytes!("fixtures/virt-max-256m.dtb");
const A72_1G: &[u8] = include_bytes!("fixtures/virt-a72-1g-smp2.dtb");
const MAX_512M: &[u8] = include_bytes!("fixtures/virt-max-512m-virtio-mmio.dtb");

fn fdt(b: &[u8]) -> Fdt<'_> {
    Fdt::new(b).expect("valid QEMU dtb")
}

#[test]
fn memory_regions_follow_the_m_option() {
    let r: Vec<_> = fdt(MAX_256M).memory_regions().collect();
    assert_eq!(
        r,
        [MemRegion {
            address: 0x4000_0000,
            size: 256 << 20
        }]
    );
    let r: Vec<_> = fdt(A72_1G).memory_regions().collect();
    assert_eq!(
        r,
        [MemRegion {
            address: 0x4000_0000,
            size: 1 << 30
        }]
    );
    let r: Vec<_> = fdt(MAX_512M).memory_regions().collect();
    assert_eq!(
        r,
        [MemRegion {
            address: 0x4000_0000,
            size: 512 << 20
        }]
    );
}

#[test]
fn bootargs_come_from_append() {
    assert_eq!(fdt(MAX_256M).bootargs(), Some("selftest=null-read foo=bar"));
    assert_eq!(
        fdt(MAX_512M).bootargs(),
        Some("model=x.safetensors port=5000")
    );
    // Without -append QEMU writes no bootargs property at all.
    assert_eq!(fdt(A72_1G).bootargs(), None);
}

#[test]
fn pl011_found_through_stdout_path() {
    for b in [MAX_256M, A72_1G, MAX_512M] {
        let f = fdt(b);
        assert_eq!(f.stdout_node().map(|n| n.name), Some("pl011@9000000"));
        assert_eq!(f.pl011_base(), Some(0x0900_0000));
    }
}

#[test]
fn find_node_by_full_and_base_name() {
    let f = fdt(MAX_256M);
    assert_eq!(f.find_node("/").map(|n| n.depth), Some(0));
    assert_eq!(f.find_node("/chosen").map(|n| n.name), Some("chosen"));
    assert_eq!(
        f.find_node("/memory").map(|n| n.name),
        Some("memory@40000000")
    );
    assert_eq!(f.find_node("/memory@40000000").map(|n| n.depth), Some(1));
    assert_eq!(
        f.find_node("/intc@8000000/v2m").map(|n| n.name),
        Some("v2m@8020000")
    );
    assert_eq!(
        f.find_node("/cpus/cpu-map/socket0/cluster0/core0")
            .map(|n| n.depth),
        Some(5)
    );
    assert!(f.find_node("/memory@50000000").is_none());
    assert!(f.find_node("/chosen/nothing").is_none());
    // v2m is under intc, not at the top level.
    assert!(f.find_node("/v2m").is_none());
    assert!(f.find_node("relative").is_none());
}

#[test]
fn cpus_count_matches_smp() {
    let count = |b| {
        let f = fdt(b);
        let cpus = f.find_node("/cpus").unwrap();
        cpus.children().filter(|n| n.base_name() == "cpu").count()
    };
    assert_eq!(count(MAX_256M), 1);
    assert_eq!(count(A72_1G), 2);
    let f = fdt(A72_1G);
    let cpu1 = f.find_node("/cpus/cpu@1").unwrap();
    // cpus has #address-cells = 1, #size-cells = 0.
    assert_eq!(
        cpu1.parent_cells,
        Cells {
            address: 1,
            size: 0
        }
    );
    // The same through children(), and for nodes deeper down.
    let cpus = f.find_node("/cpus").unwrap();
    let via_children = cpus.children().find(|n| n.name == "cpu@1").unwrap();
    assert_eq!(
        via_children.parent_cells,
        Cells {
            address: 1,
            size: 0
        }
    );
    let v2m = f.find_node("/intc/v2m").unwrap();
    assert_eq!(
        v2m.parent_cells,
        Cells {
            address: 2,
            size: 2
        }
    );
    let socket = f.find_node("/cpus/cpu-map/socket0").unwrap();
    assert_eq!(socket.parent_cells, Cells::DEFAULT);
    assert_eq!(
        cpu1.reg().unwrap().collect::<Vec<_>>(),
        [RegEntry {
            address: 1,
            size: 0
        }]
    );
    let compat = cpu1.property("compatible").unwrap().as_str();
    assert_eq!(compat, Some("arm,cortex-a72"));
}

#[test]
fn virtio_mmio_slots_are_all_listed() {
    let f = fdt(MAX_512M);
    let mut bases: Vec<u64> = f
        .compatible_nodes("virtio,mmio")
        .map(|n| {
            let regs: Vec<_> = n.reg().unwrap().collect();
            assert_eq!(regs.len(), 1);
            assert_eq!(regs[0].size, 0x200);
            let irq: Vec<u32> = n.property("interrupts").unwrap().u32s().collect();
            // GIC SPI, number 16 + slot, edge rising.
            assert_eq!(irq[0], 0);
            assert_eq!(
                irq[1],
                16 + ((regs[0].address - 0x0a00_0000) / 0x200) as u32
            );
            regs[0].address
        })
        .collect();
    bases.sort();
    let expect: Vec<u64> = (0..32).map(|i| 0x0a00_0000 + 0x200 * i).collect();
    assert_eq!(bases, expect);
}

#[test]
fn pci_ecam_reg_and_ranges() {
    let f = fdt(MAX_256M);
    let pcie: Vec<_> = f.compatible_nodes("pci-host-ecam-generic").collect();
    assert_eq!(pcie.len(), 1);
    let pcie = pcie[0];
    assert_eq!(pcie.property("device_type").unwrap().as_str(), Some("pci"));
    let reg: Vec<_> = pcie.reg().unwrap().collect();
    assert_eq!(
        reg,
        [RegEntry {
            address: 0x40_1000_0000,
            size: 0x1000_0000
        }]
    );
    let bus: Vec<u32> = pcie.property("bus-range").unwrap().u32s().collect();
    assert_eq!(bus, [0, 0xff]);
    assert_eq!(
        pcie.child_cells(),
        Cells {
            address: 3,
            size: 2
        }
    );
    let ranges: Vec<_> = pcie.ranges().unwrap().collect();
    assert_eq!(
        ranges,
        [
            RangeEntry {
                child: 0x0100_0000u128 << 64,
                parent: 0x3eff_0000,
                size: 0x1_0000
            },
            RangeEntry {
                child: (0x0200_0000u128 << 64) | 0x1000_0000,
                parent: 0x1000_0000,
                size: 0x2eff_0000
            },
            RangeEntry {
                child: (0x0300_0000u128 << 64) | 0x80_0000_0000,
                parent: 0x80_0000_0000,
                size: 0x80_0000_0000
            },
        ]
    );
    // Space code of phys.hi: 1 = I/O, 2 = 32-bit MMIO, 3 = 64-bit MMIO.
    let spaces: Vec<u32> = ranges
        .iter()
        .map(|r| ((r.child >> 88) & 3) as u32)
        .collect();
    assert_eq!(spaces, [1, 2, 3]);
}

#[test]
fn empty_ranges_and_platform_bus_ranges() {
    let f = fdt(MAX_256M);
    let intc = f.find_node("/intc").unwrap();
    assert_eq!(intc.ranges().unwrap().count(), 0);
    let gic: Vec<_> = intc.reg().unwrap().collect();
    assert_eq!(
        gic[0],
        RegEntry {
            address: 0x0800_0000,
            size: 0x1_0000
        }
    );
    assert_eq!(
        gic[1],
        RegEntry {
            address: 0x0801_0000,
            size: 0x1_0000
        }
    );
    let pb = f.find_node("/platform-bus").unwrap();
    assert_eq!(
        pb.ranges().unwrap().collect::<Vec<_>>(),
        [RangeEntry {
            child: 0,
            parent: 0x0c00_0000,
            size: 0x0200_0000
        }]
    );
    assert!(f.find_node("/chosen").unwrap().ranges().is_none());
}

#[test]
fn walker_visits_every_node_once_in_order() {
    let f = fdt(MAX_512M);
    let nodes: Vec<_> = f.nodes().collect();
    assert_eq!(nodes[0].depth, 0);
    assert_eq!(nodes[0].name, "");
    assert_eq!(nodes.iter().filter(|n| n.depth == 0).count(), 1);
    // Depth never jumps by more than one going down.
    for w in nodes.windows(2) {
        assert!(w[1].depth <= w[0].depth + 1);
    }
    let root_children: usize = f.root().children().count();
    assert_eq!(root_children, nodes.iter().filter(|n| n.depth == 1).count());
    let root = f.root();
    assert_eq!(
        root.property("compatible").unwrap().as_str(),
        Some("linux,dummy-virt")
    );
    let names: Vec<_> = root.properties().map(|p| p.name).collect();
    assert!(
        names.contains(&"#address-cells") && names.contains(&"model"),
        "{names:?}"
    );
    let psci = f.find_node("/psci").unwrap();
    let compat: Vec<_> = psci.property("compatible").unwrap().strings().collect();
    assert_eq!(compat, ["arm,psci-1.0", "arm,psci-0.2", "arm,psci"]);
    assert_eq!(psci.property("method").unwrap().as_str(), Some("hvc"));
    assert_eq!(
        psci.property("cpu_off").unwrap().as_u32(),
        Some(0x8400_0002)
    );
    let clk = f.find_node("/apb-pclk").unwrap();
    assert_eq!(
        clk.property("clock-frequency").unwrap().as_u64(),
        Some(24_000_000)
    );
    assert_eq!(f.reserved().count(), 0);
}

#[test]
fn raw_pointer_read_uses_totalsize() {
    let mut padded = MAX_256M.to_vec();
    padded.extend_from_slice(&[0xaa; 64]);
    let f = unsafe { Fdt::from_ptr(padded.as_ptr()) }.unwrap();
    assert_eq!(f.total_size(), MAX_256M.len());
    assert_eq!(
        unsafe { Fdt::from_ptr(core::ptr::null()) }.unwrap_err(),
        FdtError::Truncated
    );
    let zeros = [0u8; 64];
    assert_eq!(
        unsafe { Fdt::from_ptr(zeros.as_ptr()) }.unwrap_err(),
        FdtError::BadMagic(0)
    );
}

#[test]
fn header_errors_are_reported() {
    assert_eq!(Fdt::new(&[]).unwrap_err(), FdtError::Truncated);
    assert_eq!(Fdt::new(&MAX_256M[..20]).unwrap_err(), FdtError::Truncated);
    assert_eq!(
        Fdt::new(&MAX_256M[..MAX_256M.len() - 1]).unwrap_err(),
        FdtError::Truncated
    );
    let mut b = MAX_256M.to_vec();
    b[0] = 0;
    assert!(matches!(Fdt::new(&b), Err(FdtError::BadMagic(_))));
    let mut b = MAX_256M.to_vec();
    b[24..28].copy_from_slice(&99u32.to_be_bytes()); // last_comp_version
    assert_eq!(Fdt::new(&b).unwrap_err(), FdtError::UnsupportedVersion(99));
    let mut b = MAX_256M.to_vec();
    b[8..12].copy_from_slice(&0x7fff_fff0u32.to_be_bytes()); // off_dt_struct
    assert!(matches!(Fdt::new(&b), Err(FdtError::BadLayout(_))));
}

#[test]
fn structure_errors_are_reported() {
    let off_struct = u32::from_be_bytes(MAX_256M[8..12].try_into().unwrap()) as usize;
    // Replace the root's BEGIN_NODE with an unknown token.
    let mut b = MAX_256M.to_vec();
    b[off_struct..off_struct + 4].copy_from_slice(&7u32.to_be_bytes());
    assert_eq!(
        Fdt::new(&b).unwrap_err(),
        FdtError::BadStructure {
            offset: 0,
            what: "unknown token"
        }
    );
    // First property of the root with a huge length.
    let mut b = MAX_256M.to_vec();
    let p = off_struct + 8; // after BEGIN_NODE + empty name (padded to 4)
    assert_eq!(u32::from_be_bytes(b[p..p + 4].try_into().unwrap()), 3);
    b[p + 4..p + 8].copy_from_slice(&0xffff_fff0u32.to_be_bytes());
    assert!(matches!(Fdt::new(&b), Err(FdtError::BadStructure { .. })));
}

/// Walks everything a consumer might touch; must never panic.
fn walk_all(f: &Fdt<'_>) -> usize {
    let mut n = 0;
    for node in f.nodes() {
        n += node.properties().count() + node.children().count();
        if let Some(r) = node.reg() {
            n += r.count();
        }
        if let Some(r) = node.ranges() {
            n += r.count();
        }
        for p in node.properties() {
            n += p.strings().count() + p.u32s().count() + p.cells(3).count();
            let _ = (p.as_str(), p.as_u32(), p.as_u64());
        }
    }
    let _ = (f.bootargs(), f.pl011_base(), f.find_node("/a/b/c"));
    let _ = (f.node_by_phandle(0x8002), f.stdout_node());
    let mut info = arch::BootInfo::new("fuzz");
    arch::fdt_bootinfo::fill_from_fdt(&mut info, f, 0x4800_0000);
    n + f.memory_regions().count() + f.reserved().count()
}

#[test]
fn corrupted_blobs_never_panic() {
    assert!(walk_all(&fdt(MAX_256M)) > 500);
    let mut accepted = 0;
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for i in 0..MAX_256M.len() {
        let mut b = MAX_256M.to_vec();
        // xorshift: a different pseudo-random bit flip per byte.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        b[i] ^= 1 << (seed % 8);
        if let Ok(f) = Fdt::new(&b) {
            accepted += 1;
            walk_all(&f);
        }
    }
    // Flips inside property values keep the blob valid; flips in tokens do not.
    assert!(accepted > 0 && accepted < MAX_256M.len());
    for len in 0..MAX_256M.len() {
        if let Ok(f) = Fdt::new(&MAX_256M[..len]) {
            walk_all(&f);
        }
    }
}

#[test]
fn phandles_resolve() {
    let f = fdt(MAX_256M);
    let root_parent = f
        .root()
        .property("interrupt-parent")
        .unwrap()
        .as_u32()
        .unwrap();
    let intc = f.node_by_phandle(root_parent).unwrap();
    assert_eq!(intc.name, "intc@8000000");
    assert!(intc.is_compatible("arm,cortex-a15-gic"));
    let pcie = f.compatible_nodes("pci-host-ecam-generic").next().unwrap();
    let msi: Vec<u32> = pcie.property("msi-map").unwrap().u32s().collect();
    assert_eq!(
        f.node_by_phandle(msi[1]).map(|n| n.name),
        Some("v2m@8020000")
    );
    assert!(f.node_by_phandle(0xdead).is_none());
}
