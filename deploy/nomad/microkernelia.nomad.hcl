# A Nomad job running microkernelia VMs with the QEMU task driver, two allocations behind a
# service that nginx or HAProxy (deploy/) balance by Mcp-Session-Id. NOT run here (no Nomad
# on the development machines; see docs/DEPLOY.md "What was and was not tried").
#
# Each allocation: a sidecar runs virtiofsd on the model directory (the kernel loads its
# model over virtio-fs), and the qemu task boots the kernel with the share, a virtio-net card
# on user networking, and the guest's HTTP port 8080 mapped to the allocation's dynamic port.
# vsock is left out (it needs vhost-device-vsock and is only for clients on the host).
job "microkernelia" {
  datacenters = ["dc1"]
  type        = "service"

  group "mcp" {
    count = 2

    network {
      port "http" {}
    }

    service {
      name     = "microkernelia-mcp"
      port     = "http"
      provider = "nomad"
      # A TCP check: the guest answers GET /mcp with 405, which an http check counts as down.
      check {
        type     = "tcp"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "virtiofsd" {
      driver = "raw_exec"
      lifecycle {
        hook    = "prestart"
        sidecar = true
      }
      config {
        command = "/usr/local/bin/virtiofsd"
        args = [
          "--socket-path=${NOMAD_ALLOC_DIR}/fs.sock",
          "--shared-dir=/var/lib/microkernelia/share",
          "--sandbox=none", "--cache=never",
        ]
      }
      resources {
        cpu    = 100
        memory = 64
      }
    }

    task "vm" {
      driver = "qemu"

      artifact {
        # The kernel ELF from `make build-x86` (kernel/target/x86_64-microkernelia/release/kernel).
        source      = "https://artifacts.example.internal/microkernelia/kernel-x86_64"
        destination = "local/kernel"
        mode        = "file"
      }

      config {
        image_path  = "local/kernel"
        accelerator = "tcg"
        args = [
          "-M", "q35,memory-backend=mem", "-bios", "/usr/share/qemu/qboot.rom",
          "-object", "memory-backend-memfd,id=mem,size=512M,share=on", "-m", "512M",
          "-nodefaults", "-no-reboot", "-display", "none", "-cpu", "max", "-serial", "stdio",
          "-kernel", "local/kernel",
          "-append", "model=smollm2-135m-instruct.q8_0.safetensors http_node=vm${NOMAD_ALLOC_INDEX} http_hosts=*",
          "-chardev", "socket,id=fs0,path=${NOMAD_ALLOC_DIR}/fs.sock",
          "-device", "vhost-user-fs-pci,chardev=fs0,tag=share",
          "-netdev", "user,id=net0,hostfwd=tcp::${NOMAD_PORT_http}-:8080",
          "-device", "virtio-net-pci,netdev=net0,disable-legacy=on,romfile=",
        ]
      }

      resources {
        cpu    = 2000
        memory = 600
      }
    }
  }
}
