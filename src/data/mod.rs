//! Datasets: the 2-D toy densities, user CSV files of 2-D points, and image datasets (MNIST,
//! Fashion-MNIST from IDX files; the embedded 8×8 digits), and NumPy `.npy` arrays.

pub mod idx;
pub mod images;
pub mod npy;
pub mod toy;

pub use idx::{read_idx, DataError, IdxArray};
pub use images::{ImageSet, Splits, IMAGE_DATASETS};
pub use npy::{read_npy, NpyArray, NpyValues};
pub use toy::{load_csv, parse_csv, ToyDataset};
