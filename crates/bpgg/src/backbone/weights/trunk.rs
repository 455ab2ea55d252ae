//! Which tensors of the EfficientNet-Lite0 checkpoint form the feature trunk bpgg embeds.
//!
//! Lite0's stages (kernel, stride, expansion, repeats) are (3,1,1,1) (3,2,6,2) (5,2,6,2) (3,2,6,3)
//! (5,1,6,3) (5,2,6,4) (3,1,6,1), giving blocks 0 | 1-2 | 3-4 | 5-7 | 8-10 | 11-14 | 15 after a
//! stride-2 stem. Block 2 ends stride 4 (24 channels), block 4 stride 8 (40 channels) and block
//! 10 stride 16 (112 channels). The trunk is the stem and blocks 0..=10; the stride-32 blocks,
//! the 1280-channel head conv and the classifier are dropped.

/// Index of the last block of the stride-16, 112-channel stage.
pub const EFFICIENTNET_LITE0_TRUNK_LAST_BLOCK: usize = 10;

/// Whether the `efficientnet_pytorch` key `name` belongs to the stride-16 trunk.
pub fn is_efficientnet_lite0_trunk_key(name: &str) -> bool {
    if name.starts_with("_conv_stem.") || name.starts_with("_bn0.") {
        return true;
    }
    let Some(rest) = name.strip_prefix("_blocks.") else {
        return false;
    };
    let Some((index, _)) = rest.split_once('.') else {
        return false;
    };
    index
        .parse::<usize>()
        .is_ok_and(|i| i <= EFFICIENTNET_LITE0_TRUNK_LAST_BLOCK)
}
