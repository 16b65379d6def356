
// One workgroup per output, as `per_group`, with the tree replaced by subgroup operations:
// each subgroup combines its invocations' partial results in registers, and the first
// invocation merges the few per-subgroup results. Used where the adapter offers subgroups.
var<workgroup> subgroup_m: array<f32, 256>;
var<workgroup> subgroup_s: array<f32, 256>;

@compute @workgroup_size(256)
fn per_group_subgroup(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32,
                      @builtin(subgroup_invocation_id) lane: u32, @builtin(subgroup_id) sg: u32,
                      @builtin(num_subgroups) subgroups: u32) {
    let o = wid.x + wid.y * nwg.x;
    let total = p.outer * p.segs * p.inner;
    let acc = group_share(o, lid);
    // The subgroup's combination of its invocations' (m, s): a sum, a max, or a log-sum-exp
    // rescaled to the subgroup's running max (NEG_INF is finite, so exp(0) · 0 stays 0).
    var merged: Acc;
    switch OP {
        case REDUCE_SUM: { merged = Acc(subgroupAdd(acc.m), 0.0); }
        case REDUCE_MAX: { merged = Acc(subgroupMax(acc.m), 0.0); }
        default: {
            let m = subgroupMax(acc.m);
            merged = Acc(m, subgroupAdd(acc.s * exp(acc.m - m)));
        }
    }
    if lane == 0u {
        subgroup_m[sg] = merged.m;
        subgroup_s[sg] = merged.s;
    }
    workgroupBarrier();
    if lid == 0u && o < total {
        var all = Acc(subgroup_m[0], subgroup_s[0]);
        for (var i = 1u; i < subgroups; i++) {
            all = acc_merge(all, Acc(subgroup_m[i], subgroup_s[i]));
        }
        y[o] = acc_value(all);
    }
}
