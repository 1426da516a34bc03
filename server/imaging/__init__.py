"""Imaging: the DICOM store, its DICOMweb routes, and the synthetic CT used by the demo."""
