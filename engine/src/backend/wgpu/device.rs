//! Finding an adapter and opening a device on it.

use crate::error::{Error, Result};

/// An adapter as `hearth info --gpus` shows it.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub max_storage_binding: u64,
    pub max_buffer: u64,
    pub shader_f16: bool,
    pub subgroups: bool,
    pub timestamps: bool,
}

fn instance() -> wgpu::Instance {
    // WGPU_BACKEND etc. may narrow the search, as wgpu documents.
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
}

fn rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

/// Every adapter, best first (discrete, integrated, virtual, other, CPU).
fn adapters() -> Vec<wgpu::Adapter> {
    let mut a = pollster::block_on(instance().enumerate_adapters(wgpu::Backends::all()));
    a.sort_by_key(|a| rank(a.get_info().device_type));
    a
}

fn summary(a: &wgpu::Adapter) -> AdapterSummary {
    let (info, limits, f) = (a.get_info(), a.limits(), a.features());
    AdapterSummary {
        name: info.name,
        backend: format!("{:?}", info.backend),
        device_type: format!("{:?}", info.device_type),
        driver: format!("{} {}", info.driver, info.driver_info)
            .trim()
            .to_string(),
        max_storage_binding: limits.max_storage_buffer_binding_size,
        max_buffer: limits.max_buffer_size,
        shader_f16: f.contains(wgpu::Features::SHADER_F16),
        subgroups: f.contains(wgpu::Features::SUBGROUP),
        timestamps: f.contains(wgpu::Features::TIMESTAMP_QUERY),
    }
}

/// The adapters wgpu finds, best first; the first is the one `--backend
/// wgpu` uses unless `HEARTH_WGPU_ADAPTER` names another by index.
pub fn list_adapters() -> Vec<AdapterSummary> {
    adapters().iter().map(summary).collect()
}

/// An open device and what it offers.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub limits: wgpu::Limits,
    pub info: AdapterSummary,
    /// Timestamp queries were enabled (for `--profile`).
    pub timestamps: bool,
    /// Subgroup operations were enabled (the adapter has them).
    pub subgroups: bool,
    /// `SHADER_F16` was enabled (the adapter has it): f16 in WGSL.
    pub shader_f16: bool,
}

/// Opens the best adapter (or `HEARTH_WGPU_ADAPTER`'s index) with every
/// limit it offers; with `timestamps`, asks for timestamp queries if it has them.
pub fn open(timestamps: bool) -> Result<Gpu> {
    let mut all = adapters();
    if all.is_empty() {
        return Err(Error::Gpu(
            "no WebGPU adapter found (no Vulkan, Metal or DX12 driver); on Debian, \
             `apt-get install mesa-vulkan-drivers` gives a software one (lavapipe)"
                .into(),
        ));
    }
    let index = match std::env::var("HEARTH_WGPU_ADAPTER") {
        Ok(s) => s
            .parse::<usize>()
            .ok()
            .filter(|&i| i < all.len())
            .ok_or_else(|| {
                Error::Gpu(format!(
                    "HEARTH_WGPU_ADAPTER={s} is not an adapter index below {}",
                    all.len()
                ))
            })?,
        Err(_) => 0,
    };
    let adapter = all.swap_remove(index);
    let info = summary(&adapter);
    let limits = adapter.limits();
    let timestamps = timestamps && info.timestamps;
    let mut features = wgpu::Features::empty();
    if timestamps {
        features |= wgpu::Features::TIMESTAMP_QUERY;
    }
    let subgroups = info.subgroups;
    if subgroups {
        features |= wgpu::Features::SUBGROUP;
    }
    let shader_f16 = info.shader_f16;
    if shader_f16 {
        features |= wgpu::Features::SHADER_F16;
    }
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("hearth"),
        required_features: features,
        required_limits: limits.clone(),
        experimental_features: wgpu::ExperimentalFeatures::disabled(),
        memory_hints: wgpu::MemoryHints::Performance,
        trace: wgpu::Trace::Off,
    }))
    .map_err(|e| Error::Gpu(format!("{}: device request refused: {e}", info.name)))?;
    Ok(Gpu {
        device,
        queue,
        limits,
        info,
        timestamps,
        subgroups,
        shader_f16,
    })
}
