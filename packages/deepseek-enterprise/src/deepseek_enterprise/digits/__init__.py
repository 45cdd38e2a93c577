"""The multimodal digits data: images, speech and text of the digits 0-9 (see ``sources``)."""
