// The value a staging kernel stores in an rgba32float texel: exactly what it read.
fn texel(v: vec4<f32>) -> vec4<f32> {
    return v;
}
