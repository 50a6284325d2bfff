// Package tun opens Linux TUN devices (IFF_TUN | IFF_NO_PI: each read or
// write is one IP packet) and configures links, addresses, routes and
// policy rules over rtnetlink, so that a userspace data plane needs neither
// the ip command nor a netlink library.
//
// Everything here acts on the network namespace in which the device or
// the netlink socket was created, whatever thread uses it later.
package tun
