"""NLFT's weights in other trainers: :mod:`nlft.integrations.trl` (TRL's ``SFTTrainer``)."""
