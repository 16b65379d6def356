// Reductions of x viewed as [outer, n, inner] along n, optionally in `segs` segments of
// `seg_len` (a first pass of a two-pass reduction): y is [outer, segs, inner].
// OP: REDUCE_SUM (times `scale`), REDUCE_MAX or REDUCE_LOG_SUM_EXP (the op-code constants). Partial results of all three combine
// with the same op, which is what makes the two-pass scheme exact.

struct Params { outer: u32, n: u32, inner: u32, seg_len: u32, segs: u32, scale: f32, pad0: u32, pad1: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

override OP: u32 = 0u;
// -f32::MAX as a hex float: Tint reads the decimal -3.4028235e38 exactly, above f32's range,
// and rejects the shader.
const NEG_INF: f32 = -0x1.fffffep+127f;

struct Acc { m: f32, s: f32 }

fn acc_init() -> Acc {
    if OP == REDUCE_SUM { return Acc(0.0, 0.0); }
    return Acc(NEG_INF, 0.0);
}

fn acc_push(acc: Acc, v: f32) -> Acc {
    switch OP {
        case REDUCE_SUM: { return Acc(acc.m + v, 0.0); }
        case REDUCE_MAX: { return Acc(max(acc.m, v), 0.0); }
        default: {
            // Online log-sum-exp: running max m and sum s of exp(x - m).
            if v > acc.m { return Acc(v, acc.s * exp(acc.m - v) + 1.0); }
            return Acc(acc.m, acc.s + exp(v - acc.m));
        }
    }
}

fn acc_merge(a: Acc, b: Acc) -> Acc {
    switch OP {
        case REDUCE_SUM: { return Acc(a.m + b.m, 0.0); }
        case REDUCE_MAX: { return Acc(max(a.m, b.m), 0.0); }
        default: {
            let m = max(a.m, b.m);
            if m == NEG_INF { return a; }
            return Acc(m, a.s * exp(a.m - m) + b.s * exp(b.m - m));
        }
    }
}

fn acc_value(acc: Acc) -> f32 {
    switch OP {
        case REDUCE_SUM: { return acc.m * p.scale; }
        case REDUCE_MAX: { return acc.m; }
        default: { return acc.m + log(acc.s); }
    }
}

// One invocation per output: good when there are many outputs.
@compute @workgroup_size(256)
fn per_thread(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = gid.x + gid.y * nwg.x * 256u;
    if o >= p.outer * p.segs * p.inner {
        return;
    }
    let j = o % p.inner;
    let seg = (o / p.inner) % p.segs;
    let r = o / (p.inner * p.segs);
    let start = seg * p.seg_len;
    let stop = min(start + p.seg_len, p.n);
    var acc = acc_init();
    for (var k = start; k < stop; k++) {
        acc = acc_push(acc, x[(r * p.n + k) * p.inner + j]);
    }
    y[o] = acc_value(acc);
}

// Invocation `lid`'s share of output `o` of a one-workgroup-per-output reduction: every
// 256th element of the output's segment.
fn group_share(o: u32, lid: u32) -> Acc {
    let j = o % p.inner;
    let seg = (o / p.inner) % p.segs;
    let r = o / (p.inner * p.segs);
    let start = seg * p.seg_len;
    let stop = min(start + p.seg_len, p.n);
    var acc = acc_init();
    if o < p.outer * p.segs * p.inner {
        for (var k = start + lid; k < stop; k += 256u) {
            acc = acc_push(acc, x[(r * p.n + k) * p.inner + j]);
        }
    }
    return acc;
}

var<workgroup> partial_m: array<f32, 256>;
var<workgroup> partial_s: array<f32, 256>;

// One workgroup per output: 256 invocations share a segment, then a tree in workgroup memory.
@compute @workgroup_size(256)
fn per_group(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let o = wid.x + wid.y * nwg.x;
    let total = p.outer * p.segs * p.inner;
    let acc = group_share(o, lid);
    partial_m[lid] = acc.m;
    partial_s[lid] = acc.s;
    workgroupBarrier();
    for (var half = 128u; half > 0u; half >>= 1u) {
        if lid < half {
            let merged = acc_merge(Acc(partial_m[lid], partial_s[lid]), Acc(partial_m[lid + half], partial_s[lid + half]));
            partial_m[lid] = merged.m;
            partial_s[lid] = merged.s;
        }
        workgroupBarrier();
    }
    if lid == 0u && o < total {
        y[o] = acc_value(Acc(partial_m[0], partial_s[0]));
    }
}
