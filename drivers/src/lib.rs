//! PCI (ECAM), virtio-mmio, the virtio Hal, vsock connections and the virtio-fs (FUSE) client.
#![no_std]
