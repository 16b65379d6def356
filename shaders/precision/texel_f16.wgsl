// The value a staging kernel stores in an rgba16float texel: rounded to the nearest f16 here,
// so the store is exact (drivers may truncate when a texture store narrows f32 to f16).
enable f16;

fn texel(v: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(vec4<f16>(v));
}
