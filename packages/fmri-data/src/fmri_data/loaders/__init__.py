"""Readers that turn files on disk into a PairedDataset.

One module per format, imported on demand so that reading a .npz does not pull in nibabel or h5py:

- matlab: `load_mat`, MATLAB v5 and v7.3 files in the fmriTrn/fmriTest/stimTrn/stimTest layout
- npz: `load_npz`, what PairedDataset.save_npz writes (or a plain .npz with fmri and images)
- nifti: `load_nifti_runs`, 4-D NIfTI runs + mask + per-volume label CSVs (nilearn's Miyawaki 2008 layout)
- bdata: `read_bdata` / `load_bdata`, Kamitani-lab BData .h5 files
- nsd: `load_nsd`, the Natural Scenes Dataset's single-trial betas (NIfTI or HDF5), nsdgeneral, expdesign
"""
