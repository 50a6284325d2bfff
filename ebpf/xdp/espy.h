/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * espy.h: the layouts shared between the XDP program and the Go loader.
 *
 * bpf2go turns every type here into a Go type, so a change here is a change
 * of the Go API: keep fields naturally aligned and padding explicit, because
 * Go converts its FlowKey and Verdict to the generated types field by field.
 *
 * Ports and SPIs are stored in host byte order (the program swaps them once
 * when it builds a key) so that Go sees plain numbers; addresses stay in
 * network byte order.
 */
#ifndef ESPY_H
#define ESPY_H

#include "abi.h"

/* Outer encapsulation of a flow; part of the flow key. */
enum espy_encap {
	ESPY_ENCAP_NONE = 0,     /* ESP directly over IP (protocol 50) */
	ESPY_ENCAP_UDP = 1,      /* ESP in UDP, RFC 3948 */
	ESPY_ENCAP_TCP = 2,      /* ESP in TCP, RFC 8229: reserved, not parsed in XDP */
	ESPY_ENCAP_WESP = 3,     /* WESP directly over IP (protocol 141), RFC 5840 */
	ESPY_ENCAP_WESP_UDP = 4, /* WESP in UDP 4500 behind the 0x00000002 marker */
};

/* Key of the verdict and pending maps: one ESP SA as seen on the wire. */
struct espy_flow_key {
	__u8 family;  /* 4 or 6 */
	__u8 encap;   /* enum espy_encap */
	__u16 sport;  /* UDP source port, host order; 0 unless encapsulated in UDP */
	__u16 dport;  /* UDP destination port, host order; 0 unless in UDP */
	__u16 pad;    /* zero */
	__u32 spi;    /* host order */
	__u8 src[16]; /* IPv4 in the first 4 bytes, rest zero */
	__u8 dst[16];
};

enum espy_verdict_kind {
	ESPY_VERDICT_UNKNOWN = 0,
	ESPY_VERDICT_NULL = 1,
	ESPY_VERDICT_ENCRYPTED = 2,
};

enum espy_mode {
	ESPY_MODE_UNKNOWN = 0, /* inferred per packet from the trailer's next header */
	ESPY_MODE_TUNNEL = 1,
	ESPY_MODE_TRANSPORT = 2,
};

/* What to do with a packet. 0 means "the configured default" where allowed. */
enum espy_action {
	ESPY_ACTION_DEFAULT = 0,
	ESPY_ACTION_PASS = 1,
	ESPY_ACTION_DROP = 2,
	ESPY_ACTION_COUNT = 3, /* pass, but under its own exit reason */
};

/* Value of the verdict map, written by userspace once a flow is decided. */
struct espy_verdict {
	__u8 kind;             /* enum espy_verdict_kind */
	__u8 icv_len;          /* ICV bytes at the end of the ESP packet */
	__u8 iv_len;           /* IV bytes after the 8-byte ESP header */
	__u8 mode;             /* enum espy_mode */
	__u8 action_encrypted; /* enum espy_action for encrypted flows; 0 = config */
	__u8 flags;            /* reserved, zero */
	__u16 pad;             /* zero */
	__u32 policy_handle;   /* opaque to XDP: userspace's SPD entry */
	__u32 generation;      /* opaque to XDP: userspace's verdict generation */
	__u32 slot;            /* index into flow_stats; 0 = no per-flow counters */
};

/* Per-CPU per-flow counters, one slot per decided flow. */
struct espy_flow_stats {
	__u64 packets;
	__u64 bytes;    /* whole frames, Ethernet header included */
	__u64 unparsed; /* null verdict: packets that failed its parse (exit
			 * ESPY_EXIT_NULL_UNPARSED); userspace revokes on their rate */
};

/*
 * Value of flow_seen: one byte per flow_stats slot, set by the program when
 * the slot's flow has a packet and cleared by userspace when it reads it
 * (memory-mapped, atomic swap of 8 bytes at a time). It tells userspace which
 * decided flows the fast path handled since its last look, without reading
 * every per-CPU counter. Slot s is byte s % 64 of entry s / 64.
 */
struct espy_seen {
	__u8 b[64];
};

/* Key of the inner-policy map: the cleartext 5-tuple inside ESP-NULL. */
struct espy_inner_key {
	__u8 family;  /* 4 or 6 */
	__u8 proto;   /* inner IP protocol */
	__u16 sport;  /* host order; 0 for protocols without ports */
	__u16 dport;
	__u16 pad;    /* zero */
	__u8 src[16]; /* IPv4 in the first 4 bytes */
	__u8 dst[16];
};

/* Value of the inner-policy map. */
struct espy_inner_rule {
	__u8 action;  /* enum espy_action, never DEFAULT */
	__u8 pad[3];
	__u32 rule_id; /* opaque to XDP */
	__u64 hits;    /* packets that matched, all CPUs (atomic add) */
};

/*
 * Value of spd_cache, keyed by espy_inner_key (ICMP: type << 8 | code in
 * sport, as the SPD sees it): the compiled SPD's answer for that 5-tuple
 * under the policy control word ctl. An entry whose ctl differs from the
 * current espy_policy_ctl word (every publication bumps its generation) is a
 * miss, so a publication invalidates the whole cache without a sweep.
 */
struct espy_spd_cached {
	__u64 ctl;    /* espy_policy_ctl word the answer was computed under */
	__u8 action;  /* enum espy_action, or ESPY_ACTION_DEFAULT, or 0xff punt */
	__u8 pad[7];
};

/* The single entry of the config map, filled by userspace at load. */
struct espy_config {
	__u64 sample_interval_ns; /* GCRA emission interval per CPU; 0 = no limit */
	__u64 sample_burst_ns;    /* GCRA tolerance: interval * (burst - 1) */
	__u32 sample_count;       /* samples per unknown flow (N) */
	__u32 snaplen;            /* max frame bytes per sample */
	__u8 fail_closed;         /* drop unknown, malformed and unparsable IPsec */
	__u8 encrypted_action;    /* enum espy_action for encrypted flows */
	__u8 inner_default;       /* enum espy_action when no inner rule matches */
	__u8 bridge;              /* redirect passing frames via bridge_ports */
	__u8 spd_cache_off;       /* walk the compiled SPD for every packet */
	__u8 exact_rules;         /* inner_rules holds entries: look there first */
	__u8 pad[2];
};

/* Header of every sample record; the frame bytes follow it. */
struct espy_sample {
	struct espy_flow_key key;
	__u32 ifindex;  /* ingress interface */
	__u32 orig_len; /* frame length on the wire */
	__u32 cap_len;  /* frame bytes that follow: min(orig_len, snaplen) */
	__u16 l3_off;   /* offset of the outer IP header in the frame */
	__u16 esp_off;  /* offset of the ESP (or WESP) header in the frame */
};

/* Largest frame copy per sample (Go's MaxSnapLen). */
#define ESPY_MAX_SNAPLEN 16384

/* A sample as it is assembled before it goes to the ring buffer. */
struct espy_sample_buf {
	struct espy_sample hdr;
	__u8 frame[ESPY_MAX_SNAPLEN];
};

/*
 * Why the program returned what it returned: exactly one counter in
 * exit_counters is incremented per packet.
 */
enum espy_exit_reason {
	ESPY_EXIT_NON_ESP = 0,          /* not IPsec */
	ESPY_EXIT_IKE,                  /* UDP 500, or UDP 4500 with the non-ESP marker */
	ESPY_EXIT_KEEPALIVE,            /* NAT-T keepalive (single 0xFF byte) */
	ESPY_EXIT_PENDING_SAMPLED,      /* unknown flow, frame sent to userspace */
	ESPY_EXIT_PENDING_OVER_LIMIT,   /* unknown flow, already sampled N times */
	ESPY_EXIT_SAMPLE_RATELIMITED,   /* unknown flow, sample budget exhausted */
	ESPY_EXIT_SAMPLE_LOST,          /* unknown flow, sample ring full */
	ESPY_EXIT_NULL_ALLOW,           /* ESP-NULL, inner rule or default allowed */
	ESPY_EXIT_NULL_DROP,            /* ESP-NULL, inner rule or default dropped */
	ESPY_EXIT_NULL_COUNT,           /* ESP-NULL, inner rule or default counted */
	ESPY_EXIT_NULL_UNPARSED,        /* ESP-NULL, trailer or inner header unreadable */
	ESPY_EXIT_ENCRYPTED_PASS,
	ESPY_EXIT_ENCRYPTED_DROP,
	ESPY_EXIT_ENCRYPTED_COUNT,
	ESPY_EXIT_MALFORMED,            /* truncated or inconsistent outer headers */
	ESPY_EXIT_FRAGMENT,             /* IP fragment carrying or possibly carrying ESP */
	ESPY_EXIT_EXTHDR_LIMIT,         /* more IPv6 extension headers than parsed */
	ESPY_EXIT_WESP_MISMATCH,        /* WESP header contradicts the null verdict or the
					 * ESP trailer; counted as unparsed for the flow */
	ESPY_EXIT_MAX,
};

#endif
