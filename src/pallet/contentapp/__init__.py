"""The content app: serves what distributions point at under /pallet/content/."""
