"""Model pieces of DeepMAC: mask heads and the meta-architecture around them."""
