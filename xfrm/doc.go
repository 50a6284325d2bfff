// Package xfrm is a client of the Linux kernel's IPsec state (XFRM) over
// NETLINK_XFRM, and an IKEv2 data plane built on it: Child SAs installed
// with DataPlane are carried by the kernel's ESP (esp4/esp6), which the
// kernel must have.
//
// Conn adds, queries and deletes SAs and policies; ExpireListener receives
// the kernel's soft and hard lifetime expiries. Messages are encoded by
// hand after include/uapi/linux/xfrm.h for the native byte order, as the
// kernel expects them.
package xfrm
