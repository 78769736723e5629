//! `--profile`: timestamps around every kernel's compute pass, resolved at
//! each submit and summed per kernel name.

/// Time spent in one kernel, summed over its dispatches.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelTime {
    pub name: &'static str,
    pub calls: usize,
    pub ms: f64,
}

/// Passes timed per submit; later ones in the same submit go untimed.
const PASSES: u32 = 2048;

pub(super) struct Profiler {
    queries: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    readback: wgpu::Buffer,
    /// Kernel of each timed pass in the current submit.
    labels: Vec<&'static str>,
    period_ns: f64,
    totals: Vec<KernelTime>,
}

impl Profiler {
    pub(super) fn new(device: &wgpu::Device, queue: &wgpu::Queue) -> Profiler {
        let bytes = u64::from(PASSES) * 2 * 8;
        Profiler {
            queries: device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("kernel timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: PASSES * 2,
            }),
            resolve: device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("timestamps"),
                size: bytes,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            }),
            readback: device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("timestamps read-back"),
                size: bytes,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
            labels: Vec::new(),
            period_ns: f64::from(queue.get_timestamp_period()),
            totals: Vec::new(),
        }
    }

    /// The query set and first index for the next pass, if slots remain.
    pub(super) fn next(&mut self, label: &'static str) -> Option<(wgpu::QuerySet, u32)> {
        if self.labels.len() as u32 >= PASSES {
            return None;
        }
        let i = self.labels.len() as u32 * 2;
        self.labels.push(label);
        Some((self.queries.clone(), i))
    }

    /// Records the resolve and copy of this submit's timestamps.
    pub(super) fn resolve(&self, enc: &mut wgpu::CommandEncoder) {
        if self.labels.is_empty() {
            return;
        }
        let n = self.labels.len() as u32 * 2;
        enc.resolve_query_set(&self.queries, 0..n, &self.resolve, 0);
        enc.copy_buffer_to_buffer(&self.resolve, 0, &self.readback, 0, u64::from(n) * 8);
    }

    /// Waits for the submit and adds its pass times to the totals.
    pub(super) fn collect(&mut self, device: &wgpu::Device) {
        if self.labels.is_empty() {
            return;
        }
        let bytes = self.labels.len() as u64 * 16;
        self.readback
            .map_async(wgpu::MapMode::Read, 0..bytes, |_| {});
        if device.poll(wgpu::PollType::wait_indefinitely()).is_ok() {
            if let Ok(view) = self.readback.get_mapped_range(0..bytes) {
                let ts: &[u64] = bytemuck::cast_slice(&view);
                for (i, &name) in self.labels.iter().enumerate() {
                    let ns = ts[2 * i + 1].saturating_sub(ts[2 * i]) as f64 * self.period_ns;
                    match self.totals.iter_mut().find(|k| k.name == name) {
                        Some(k) => {
                            k.calls += 1;
                            k.ms += ns / 1e6;
                        }
                        None => self.totals.push(KernelTime {
                            name,
                            calls: 1,
                            ms: ns / 1e6,
                        }),
                    }
                }
            }
            self.readback.unmap();
        }
        self.labels.clear();
    }

    /// The totals so far, slowest first; starts over.
    pub(super) fn take(&mut self) -> Vec<KernelTime> {
        let mut t = std::mem::take(&mut self.totals);
        t.sort_by(|a, b| b.ms.total_cmp(&a.ms));
        t
    }
}
