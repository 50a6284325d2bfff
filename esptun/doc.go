// Package esptun is espy's userspace ESP data plane: it carries the Child
// SAs the ike package negotiates through a TUN device, for kernels without
// ESP (CONFIG_INET_ESP), much as wireguard-go carries its own protocol.
//
// Packets the host routes into the TUN device are matched to an outbound
// SA by its traffic selectors, sealed (package esp) and sent as ESP in UDP
// from the IKE endpoint's NAT-T socket (RFC 3948) or as IP protocol 50 on a
// raw socket. ESP arriving on either is opened, checked against the
// inbound SA's selectors and written to the TUN device.
//
// Routing: each outbound SA's remote selectors are routed through the
// device in a table of their own, looked up by a policy rule for all
// packets except those of sockets carrying the data plane's mark (IKE,
// ESP-in-UDP, raw ESP). So transport mode, where the selectors are the IKE
// peer's own address, works without looping ESP into the tunnel.
package esptun
