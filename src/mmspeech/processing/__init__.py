"""Front ends that turn audio and text into model inputs and model outputs into text."""
