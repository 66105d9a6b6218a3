//! `mk-run`: boot microkernelia images under QEMU.
//!
//! ```text
//! mk-run run [--machine q35|microvm|virt] [--accel tcg|kvm] [--kernel PATH]
//!            [--append CMDLINE] [--cpu MODEL] [--memory MIB] [--timeout SECS]
//!            [--interactive] [--shared-memory] [--machine-opt OPT]... [--gdb]
//!            [--share DIR [--model PATH] [--port N] [--http-port N] [--run-dir DIR]]
//!            [-- EXTRA QEMU ARGS...]
//! mk-run boot-time [--machine M]... [--runs N] [--kernel PATH]
//! mk-run check-float KERNEL_ELF
//! ```
//! `run` exits with the kernel's exit code (or 124 on timeout, 125 when QEMU
//! stopped without a kernel exit code). Without `--kernel`, the image is built
//! with `make build-x86` / `make build-arm`.
//!
//! `--share DIR` serves MCP: virtiofsd shares DIR, vhost-device-vsock carries MCP on
//! vsock `--port` (default 5000), the kernel loads `--model` (a path inside DIR), and
//! guest memory is sized to the model unless `--memory` is given. `--http-port N` adds a
//! virtio-net card on QEMU user networking and serves MCP over HTTP at
//! `http://127.0.0.1:N/mcp` too (the guest's port 8080 forwarded from the host's loopback).

use ci::daemons::VmDevices;
use ci::exit::KernelExit;
use ci::mcp_vm::McpVmSpec;
use ci::{build, floatcheck, run_captured, run_interactive, Machine, VmConfig};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

fn usage() -> ExitCode {
    eprintln!(
        "usage: mk-run run [--machine q35|microvm|virt] [--accel tcg|kvm] [--kernel PATH] \
         [--append CMDLINE] [--cpu MODEL] [--memory MIB] [--timeout SECS] [--interactive] \
         [--shared-memory] [--machine-opt OPT]... [--gdb] \
         [--share DIR [--model PATH] [--port N] [--http-port N] [--run-dir DIR]] [-- QEMU ARGS]\n\
         \x20      mk-run boot-time [--machine M]... [--runs N] [--kernel PATH]\n\
         \x20      mk-run check-float KERNEL_ELF"
    );
    ExitCode::from(2)
}

struct Opts {
    machines: Vec<Machine>,
    accel: ci::Accel,
    kernel: Option<PathBuf>,
    append: String,
    cpu: Option<String>,
    memory: Option<u32>,
    timeout: u64,
    share: Option<PathBuf>,
    model: Option<String>,
    port: u32,
    http_port: Option<u16>,
    run_dir: Option<PathBuf>,
    interactive: bool,
    shared_memory: bool,
    machine_opts: Vec<String>,
    gdb: bool,
    runs: usize,
    extra: Vec<String>,
}

fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        machines: vec![],
        accel: ci::Accel::Tcg,
        kernel: None,
        append: String::new(),
        cpu: None,
        memory: None,
        timeout: 60,
        share: None,
        model: None,
        port: ci::mcp_vm::DEFAULT_PORT,
        http_port: None,
        run_dir: None,
        interactive: false,
        shared_memory: false,
        machine_opts: vec![],
        gdb: false,
        runs: 5,
        extra: vec![],
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = |name: &str| it.next().cloned().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--machine" => {
                let v = val("--machine")?;
                o.machines
                    .push(Machine::parse(&v).ok_or(format!("unknown machine '{v}'"))?);
            }
            "--accel" => {
                let v = val("--accel")?;
                o.accel = ci::Accel::parse(&v).ok_or(format!("unknown accelerator '{v}'"))?;
            }
            "--kernel" => o.kernel = Some(val("--kernel")?.into()),
            "--append" => o.append = val("--append")?,
            "--cpu" => o.cpu = Some(val("--cpu")?),
            "--memory" => o.memory = Some(val("--memory")?.parse().map_err(|_| "bad --memory")?),
            "--share" => o.share = Some(val("--share")?.into()),
            "--model" => o.model = Some(val("--model")?),
            "--port" => o.port = val("--port")?.parse().map_err(|_| "bad --port")?,
            "--http-port" => {
                o.http_port = Some(val("--http-port")?.parse().map_err(|_| "bad --http-port")?)
            }
            "--run-dir" => o.run_dir = Some(val("--run-dir")?.into()),
            "--timeout" => o.timeout = val("--timeout")?.parse().map_err(|_| "bad --timeout")?,
            "--runs" => o.runs = val("--runs")?.parse().map_err(|_| "bad --runs")?,
            "--interactive" => o.interactive = true,
            "--shared-memory" => o.shared_memory = true,
            "--gdb" => o.gdb = true,
            "--machine-opt" => o.machine_opts.push(val("--machine-opt")?),
            "--" => {
                o.extra = it.by_ref().cloned().collect();
            }
            other => return Err(format!("unknown option '{other}'")),
        }
    }
    if o.machines.is_empty() {
        o.machines.push(Machine::Q35);
    }
    Ok(o)
}

fn config(o: &Opts, m: Machine) -> Result<VmConfig, String> {
    let kernel = match &o.kernel {
        Some(k) => k.clone(),
        None => build::build(m.arch()).map_err(|e| e.to_string())?,
    };
    let mut c = VmConfig::new(m, kernel)
        .cmdline(&o.append)
        .timeout(Duration::from_secs(o.timeout));
    c.accel = o.accel;
    c.cpu = o.cpu.clone();
    c.memory_mib = o.memory.unwrap_or(256);
    c.extra_args = o.extra.clone();
    c.shared_memory = o.shared_memory;
    c.machine_opts = o.machine_opts.clone();
    if o.gdb {
        // gdbstub on tcp::1234, CPU halted until the debugger continues.
        c.extra_args.extend(["-s".to_string(), "-S".to_string()]);
    }
    Ok(c)
}

/// The MCP VM description for `--share`.
fn mcp_spec(o: &Opts, m: Machine) -> Result<McpVmSpec, String> {
    let share = o.share.clone().ok_or("--share is needed")?;
    let kernel = match &o.kernel {
        Some(k) => k.clone(),
        None => build::build(m.arch()).map_err(|e| e.to_string())?,
    };
    let mut spec = McpVmSpec::new(m, kernel, share);
    spec.accel = o.accel;
    spec.cpu = o.cpu.clone();
    spec.model = o.model.clone();
    spec.port = o.port;
    spec.memory_mib = o.memory;
    spec.extra_cmdline = o.append.clone();
    spec.run_dir = o.run_dir.clone();
    if let Some(p) = o.http_port {
        spec = spec.with_http(p).map_err(|e| e.to_string())?;
    }
    Ok(spec)
}

/// `run --share`: daemons, then QEMU with its devices; prints how to reach MCP.
fn cmd_run_served(o: &Opts) -> Result<ExitCode, String> {
    let m = o.machines[0];
    let spec = mcp_spec(o, m)?;
    if let Some(model) = &spec.model {
        if !spec.share.join(model).is_file() {
            return Err(format!(
                "model {model} is not in {} (make models)",
                spec.share.display()
            ));
        }
    }
    let devices = VmDevices::start(spec.device_options()).map_err(|e| e.to_string())?;
    let mut c = spec.vm_config(&devices);
    c.timeout = Duration::from_secs(o.timeout);
    c.extra_args.extend(o.extra.iter().cloned());
    c.machine_opts = o.machine_opts.clone();
    if o.gdb {
        c.extra_args.extend(["-s".to_string(), "-S".to_string()]);
    }
    let uds = devices.vsock_uds();
    let arch = match m.arch() {
        ci::Arch::X86_64 => "x86_64",
        ci::Arch::Aarch64 => "aarch64",
    };
    eprintln!(
        "[mk-run] {} with {} MiB, share {}, MCP on vsock port {}",
        m.name(),
        c.memory_mib,
        spec.share.display(),
        spec.port
    );
    eprintln!("[mk-run] once \"mcp ready\" is printed, call it from another terminal:");
    eprintln!(
        "[mk-run]   target/release/mcp-cli --vsock-uds {} --port {} infer \"Once upon a time\"",
        uds.display(),
        spec.port
    );
    if let Some(net) = &spec.http {
        eprintln!(
            "[mk-run] MCP over HTTP (Streamable HTTP, any MCP client): {}",
            net.url()
        );
        eprintln!(
            "[mk-run]   target/release/mcp-cli --url {} infer \"Once upon a time\"",
            net.url()
        );
    }
    eprintln!("[mk-run] or let an MCP client boot its own VM (server command for its config):");
    let model = spec
        .model
        .as_ref()
        .map(|p| format!(" --model {}", spec.share.join(p).display()))
        .unwrap_or_default();
    eprintln!(
        "[mk-run]   {}/target/release/mcp-cli bridge --boot {arch} --machine {}{model}",
        std::env::current_dir()
            .map(|d| d.display().to_string())
            .unwrap_or_default(),
        m.name()
    );
    if o.interactive {
        eprintln!("[mk-run] serial on this terminal; Ctrl-A X quits");
        let e = run_interactive(&c).map_err(|e| e.to_string())?;
        drop(devices);
        return Ok(if e == KernelExit::NoCode(0) {
            ExitCode::SUCCESS
        } else {
            eprintln!("[mk-run] kernel exit: {e:?}");
            exit_of(e)
        });
    }
    let r = run_captured(&c).map_err(|e| e.to_string())?;
    print!("{}", r.serial);
    eprint!("{}", r.stderr);
    Ok(exit_of(r.exit))
}

fn exit_of(e: KernelExit) -> ExitCode {
    match e {
        KernelExit::Code(c) => ExitCode::from(c),
        KernelExit::Killed => ExitCode::from(124),
        KernelExit::NoCode(_) => ExitCode::from(125),
    }
}

fn cmd_run(o: &Opts) -> Result<ExitCode, String> {
    if o.share.is_some() {
        return cmd_run_served(o);
    }
    let c = config(o, o.machines[0])?;
    if o.interactive {
        eprintln!(
            "[mk-run] {} serial on this terminal; Ctrl-A X quits",
            c.machine.name()
        );
        let e = run_interactive(&c).map_err(|e| e.to_string())?;
        if e == KernelExit::NoCode(0) {
            // Ctrl-A X (or the guest powered off without a code): a normal end here.
            eprintln!("[mk-run] QEMU quit");
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!("[mk-run] kernel exit: {e:?}");
        return Ok(exit_of(e));
    }
    let r = run_captured(&c).map_err(|e| e.to_string())?;
    print!("{}", ci::symbolize::annotate(&r.serial, &c.kernel));
    eprint!("{}", r.stderr);
    if r.timed_out {
        eprintln!("[mk-run] TIMEOUT after {} s: kernel hung", o.timeout);
    }
    if let Some(w) = r.boot_done_wall {
        eprintln!(
            "[mk-run] boot done: kernel {} us since first instruction, wall {:.1} ms since QEMU exec",
            r.boot_done_kernel_us.unwrap_or(0),
            w.as_secs_f64() * 1000.0
        );
    }
    eprintln!(
        "[mk-run] kernel exit: {:?} (QEMU status {:?})",
        r.exit, r.status
    );
    Ok(exit_of(r.exit))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn cmd_boot_time(o: &Opts) -> Result<ExitCode, String> {
    println!(
        "| machine | kernel: first instruction → boot done (median / min) \
         | runner: QEMU exec → boot done line (median / min) | runs |"
    );
    println!("|---|---|---|---|");
    for &m in &o.machines {
        let mut c = config(o, m)?;
        if c.cmdline.is_empty() {
            c.cmdline = "selftest=none".into();
        }
        let (mut k, mut w) = (vec![], vec![]);
        for _ in 0..o.runs.max(1) {
            let r = run_captured(&c).map_err(|e| e.to_string())?;
            match (r.boot_done_kernel_us, r.boot_done_wall, r.code()) {
                (Some(us), Some(wall), Some(0)) => {
                    k.push(us as f64 / 1000.0);
                    w.push(wall.as_secs_f64() * 1000.0);
                }
                _ => return Err(format!("{} boot failed: {}", m.name(), r.describe())),
            }
        }
        let (km, wm) = (median(&mut k), median(&mut w));
        println!(
            "| {} | {km:.1} / {:.1} ms | {wm:.1} / {:.1} ms | {} |",
            m.name(),
            k[0],
            w[0],
            k.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_check_float(elf: &str) -> Result<ExitCode, String> {
    let r = floatcheck::check(elf.as_ref())?;
    for (m, n) in &r.sse_counts {
        println!("{m}: {n} instructions");
    }
    if r.soft_float_symbols.is_empty() {
        println!("soft-float symbols: none");
    } else {
        println!("soft-float symbols: {}", r.soft_float_symbols.join(" "));
    }
    println!(
        "{}",
        if r.ok() {
            "float code uses SSE: OK"
        } else {
            "float check FAILED"
        }
    );
    Ok(if r.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        return usage();
    };
    let result = match cmd.as_str() {
        "check-float" => match args.get(1) {
            Some(elf) => cmd_check_float(elf),
            None => return usage(),
        },
        "run" | "boot-time" => match parse(&args[1..]) {
            Ok(o) if cmd == "run" => cmd_run(&o),
            Ok(o) => cmd_boot_time(&o),
            Err(e) => Err(e),
        },
        _ => return usage(),
    };
    result.unwrap_or_else(|e| {
        eprintln!("mk-run: {e}");
        ExitCode::from(2)
    })
}
