"""The entry-point module: registrations only, no torch import."""

from deepseek import hookimpl


@hookimpl
def deepseek_register_models(register):
    register("toyclf.mlp", "deepseek_toyclf.model:BlobClassifier", description="MLP classifier over feature vectors")


@hookimpl
def deepseek_register_datasets(register):
    register("toyclf.blobs", "deepseek_toyclf.data:Blobs", description="Gaussian blobs, one per class")
