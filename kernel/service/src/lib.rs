//! The kernel's MCP service: its tools (`infer`, `health`, `metadata`, `load_model`, `logs`,
//! `list_models`) over the real inference engine. [`catalog`] says what they are (names,
//! schemas, typed arguments), [`tools`] implements them; `mcp` is only the protocol.
//!
//! Everything machine-specific comes in through [`Platform`] (a read-only file system, a
//! clock, a log source, memory statistics, CPU features), so the same code runs in the kernel
//! over virtio-fs and in host tests over a directory. The kernel only builds a `Platform`,
//! calls [`Service::new`], [`Service::load`] for the `model=` of its command line, and
//! [`Service::register`] into the MCP server's tool registry.
#![no_std]

extern crate alloc;
#[cfg(not(target_os = "none"))]
extern crate std;

pub mod catalog;
#[cfg(not(target_os = "none"))]
pub mod host;
pub mod loaded_model;
pub mod logs;
pub mod platform;
pub mod tools;

use alloc::boxed::Box;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use core::cell::RefCell;

use inference::exec::Executor;
use inference::kernels::Kernels;
use mcp::serde_json::{json, Value};
use mcp::ToolRegistry;

pub use loaded_model::{LoadedModel, ModelLimits};
pub use platform::{
    DirEntry, FileHandle, LogSource, MemoryStats, Platform, PlatformInfo, ReadOnlyFs,
};

/// What the exclusive tools share: the share, the loaded model and how to run it.
pub struct ModelHost {
    pub fs: Box<dyn ReadOnlyFs>,
    pub model: Option<LoadedModel>,
    pub kernels: Kernels,
    pub executor: Box<dyn Executor>,
    pub clock: fn() -> u64,
    pub memory: Rc<dyn MemoryStats>,
    pub limits: ModelLimits,
    pub info: PlatformInfo,
    /// Completed `infer` calls.
    pub infer_count: u64,
}

impl ModelHost {
    /// Loads `path` and, only if that fully succeeds, replaces the current model.
    /// Returns `load_model`'s structured result.
    pub fn load(&mut self, path: &str) -> Result<Value, String> {
        let new = LoadedModel::load(&mut *self.fs, &*self.memory, path, self.limits, self.clock)?;
        let summary = json!({
            "path": new.path,
            "name": new.name(),
            "quant": new.quant(),
            "parameters": new.parameters(),
            "load_ms": new.load_ns as f64 / 1e6,
        });
        self.model = Some(new);
        Ok(summary)
    }
}

/// What the light tools (`health`, `logs`) read while an exclusive tool may be running.
pub struct Status {
    pub model_name: Option<String>,
    pub memory: Rc<dyn MemoryStats>,
    pub logs: Box<dyn LogSource>,
    pub clock: fn() -> u64,
}

/// The service: shared state plus the tools over it.
pub struct Service {
    host: Rc<RefCell<ModelHost>>,
    status: Rc<RefCell<Status>>,
}

impl Service {
    /// Selects the matmul kernels for the platform's CPU features; no model is loaded yet.
    pub fn new(platform: Platform, limits: ModelLimits) -> Service {
        let memory: Rc<dyn MemoryStats> = Rc::from(platform.memory);
        let kernels = Kernels::select(&platform.info.cpu_features);
        Service {
            host: Rc::new(RefCell::new(ModelHost {
                fs: platform.fs,
                model: None,
                kernels,
                executor: platform.executor,
                clock: platform.clock,
                memory: memory.clone(),
                limits,
                info: platform.info,
                infer_count: 0,
            })),
            status: Rc::new(RefCell::new(Status {
                model_name: None,
                memory,
                logs: platform.logs,
                clock: platform.clock,
            })),
        }
    }

    /// Loads a model (the command line's `model=`); on error the current one stays.
    /// Returns a one-line summary.
    pub fn load(&self, path: &str) -> Result<String, String> {
        let mut host = self.host.borrow_mut();
        let v = host.load(path)?;
        self.status.borrow_mut().model_name = host.model.as_ref().map(LoadedModel::name);
        Ok(format!(
            "{} ({}, {} parameters, {:.1} MiB) in {:.0} ms",
            v["name"].as_str().unwrap_or(path),
            v["quant"].as_str().unwrap_or("?"),
            v["parameters"],
            host.model
                .as_ref()
                .map_or(0.0, |m| m.file_bytes() as f64 / (1 << 20) as f64),
            v["load_ms"].as_f64().unwrap_or(0.0)
        ))
    }

    /// Name of the matmul kernel variant in use (e.g. `avx2`, `neon-i8mm`).
    pub fn kernel_variant(&self) -> &'static str {
        self.host.borrow().kernels.variant().name()
    }

    /// Adds the six tools to `registry`.
    pub fn register(&self, registry: &mut ToolRegistry) -> Result<(), String> {
        for tool in tools::all(&self.host, &self.status) {
            registry.register(tool)?;
        }
        Ok(())
    }
}
