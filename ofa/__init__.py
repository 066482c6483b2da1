"""The OFA MobileNetV3 model side: configs and layer plans (plain data, no torch), and the
supernet, export and training (torch, imported from their own modules)."""
