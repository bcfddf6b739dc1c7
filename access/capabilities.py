"""The names of what a tier can let its holders do, and of the credentials it can require."""

GENERATE = "generate"  # generate cohorts in the browser, download screened images
EXPORT_DICOM = "export_dicom"  # DICOM export of screened cohorts
API = "api"  # use the REST API with personal tokens
DOWNLOAD_WEIGHTS = "download_weights"  # download model weights

CAPABILITIES = {
    GENERATE: "Generate synthetic cohorts and download screened images",
    EXPORT_DICOM: "Export screened cohorts as DICOM",
    API: "Use the REST API",
    DOWNLOAD_WEIGHTS: "Download model weights",
}

PROFILE = "profile"
PHYSIONET = "physionet"
TRAINING = "training"
AGREEMENTS = "agreements"
RESEARCH_PLAN = "research_plan"

CREDENTIALS = {
    PROFILE: "A complete profile",
    PHYSIONET: "PhysioNet credentialing for MIMIC-CXR, checked by a reviewer",
    TRAINING: "A valid CITI 'Data or Specimens Only Research' training certificate",
    AGREEMENTS: "The current data use agreement and platform terms, signed",
    RESEARCH_PLAN: "A research plan",
}

DAILY_IMAGES = "images_per_day"
