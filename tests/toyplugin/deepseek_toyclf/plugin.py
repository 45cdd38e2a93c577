"""The entry-point module: registrations only, no torch import."""

from deepseek import hookimpl

COMPONENTS = {
    "model": ("toyclf.mlp", "deepseek_toyclf.model:BlobClassifier", "MLP classifier over feature vectors"),
    "dataset": ("toyclf.blobs", "deepseek_toyclf.data:Blobs", "Gaussian blobs, one per class"),
}


@hookimpl
def deepseek_register_models(register):
    name, target, description = COMPONENTS["model"]
    register(name, target, description=description)


@hookimpl
def deepseek_register_datasets(register):
    name, target, description = COMPONENTS["dataset"]
    register(name, target, description=description)
