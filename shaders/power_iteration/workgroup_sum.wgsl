// Shared by the power-iteration kernels (concatenated before each, WGSL has no include):
// the workgroup size and a workgroup-wide sum.
// WG (a power of two ≤ 256) is the workgroup size: on CPU adapters every barrier switches
// between all of a workgroup's invocations, so small matrices run fastest with few of them.

override WG: u32 = 256u;

var<workgroup> partial: array<f32, 256>;

// Σ over the workgroup of each invocation's `value` (every invocation gets the total).
fn workgroup_sum(lid: u32, value: f32) -> f32 {
    partial[lid] = value;
    workgroupBarrier();
    for (var half = WG / 2u; half > 0u; half >>= 1u) {
        if lid < half {
            partial[lid] += partial[lid + half];
        }
        workgroupBarrier();
    }
    let total = partial[0];
    workgroupBarrier();
    return total;
}
