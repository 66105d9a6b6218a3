//! `mk-run`: boot microkernelia images under QEMU.
//!
//! ```text
//! mk-run run [--machine q35|microvm|virt] [--accel tcg|kvm] [--kernel PATH]
//!            [--append CMDLINE] [--cpu MODEL] [--memory MIB] [--timeout SECS]
//!            [--interactive] [--shared-memory] [--machine-opt OPT]... [--gdb]
//!            [-- EXTRA QEMU ARGS...]
//! mk-run boot-time [--machine M]... [--runs N] [--kernel PATH]
//! mk-run check-float KERNEL_ELF
//! ```
//! `run` exits with the kernel's exit code (or 124 on timeout, 125 when QEMU
//! stopped without a kernel exit code). Without `--kernel`, the image is built
//! with `make build-x86` / `make build-arm`.

use ci::exit::KernelExit;
use ci::{build, floatcheck, run_captured, run_interactive, Machine, VmConfig};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

fn usage() -> ExitCode {
    eprintln!(
        "usage: mk-run run [--machine q35|microvm|virt] [--accel tcg|kvm] [--kernel PATH] \
         [--append CMDLINE] [--cpu MODEL] [--memory MIB] [--timeout SECS] [--interactive] \
         [--shared-memory] [--machine-opt OPT]... [--gdb] [-- QEMU ARGS]\n\
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
    memory: u32,
    timeout: u64,
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
        memory: 256,
        timeout: 60,
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
            "--memory" => o.memory = val("--memory")?.parse().map_err(|_| "bad --memory")?,
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
    c.memory_mib = o.memory;
    c.extra_args = o.extra.clone();
    c.shared_memory = o.shared_memory;
    c.machine_opts = o.machine_opts.clone();
    if o.gdb {
        // gdbstub on tcp::1234, CPU halted until the debugger continues.
        c.extra_args.extend(["-s".to_string(), "-S".to_string()]);
    }
    Ok(c)
}

fn exit_of(e: KernelExit) -> ExitCode {
    match e {
        KernelExit::Code(c) => ExitCode::from(c),
        KernelExit::Killed => ExitCode::from(124),
        KernelExit::NoCode(_) => ExitCode::from(125),
    }
}

fn cmd_run(o: &Opts) -> Result<ExitCode, String> {
    let c = config(o, o.machines[0])?;
    if o.interactive {
        eprintln!(
            "[mk-run] {} serial on this terminal; Ctrl-A X quits",
            c.machine.name()
        );
        let e = run_interactive(&c, &mut []).map_err(|e| e.to_string())?;
        if e == KernelExit::NoCode(0) {
            // Ctrl-A X (or the guest powered off without a code): a normal end here.
            eprintln!("[mk-run] QEMU quit");
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!("[mk-run] kernel exit: {e:?}");
        return Ok(exit_of(e));
    }
    let r = run_captured(&c, &mut []).map_err(|e| e.to_string())?;
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
            let r = run_captured(&c, &mut []).map_err(|e| e.to_string())?;
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
