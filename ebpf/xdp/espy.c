// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * espy.c: the XDP fast path.
 *
 * Every frame is parsed down to its ESP (or WESP) header. Frames that are
 * not IPsec pass. IPsec frames are looked up by SA in the verdict map that
 * userspace fills: ESP-NULL flows are opened (trailer, then inner header) and
 * checked against the inner policy (an exact 5-tuple map, then the compiled
 * SPD of policy_maps.h), encrypted flows get the configured
 * action, and the first frames of an unknown flow are copied whole to
 * userspace, where the RFC 5879 heuristics decide.
 *
 * Exactly one exit reason is counted per frame.
 */
#include "abi.h"
#include "espy.h"
#include "policy_maps.h"

#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

char __license[] SEC("license") = "Dual BSD/GPL";

/* IPv6 extension headers walked before giving up (outer and inner). */
#define ESPY_MAX_EXT_HDRS 8
/* VLAN tags walked: 802.1ad outer plus 802.1Q inner. */
#define ESPY_MAX_VLANS 2
/* Largest header offset the parser follows; frames are linear and <= 16 KiB. */
#define ESPY_OFF_MAX 0x3fff
/* Pad bytes of a decided null flow are checked against RFC 4303's 1, 2, 3, …
 * in windows of this many bytes, walking back from the pad length byte;
 * ESPY_PAD_CHUNKS windows cover the longest pad (255 bytes). */
#define ESPY_PAD_CHECK 16
#define ESPY_PAD_CHUNKS ((255 + ESPY_PAD_CHECK - 1) / ESPY_PAD_CHECK)
#define ESPY_PAD_SPAN (ESPY_PAD_CHUNKS * ESPY_PAD_CHECK)
/* pad_ok reads a window as two 8-byte words. */
_Static_assert(ESPY_PAD_CHECK == 16, "pad_ok reads two words");

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8
#define ETH_P_QINQ1 0x9100

#define IPPROTO_HOPOPTS 0
#define IPPROTO_ICMP 1
#define IPPROTO_IPIP 4
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define IPPROTO_DCCP 33
#define IPPROTO_IPV6 41
#define IPPROTO_ROUTING 43
#define IPPROTO_FRAGMENT 44
#define IPPROTO_GRE 47
#define IPPROTO_ESP 50
#define IPPROTO_NONE 59
#define IPPROTO_ICMPV6 58
#define IPPROTO_DSTOPTS 60
#define IPPROTO_SCTP 132
#define IPPROTO_UDPLITE 136
#define IPPROTO_WESP 141

#define PORT_IKE 500
#define PORT_NATT 4500

#define WESP_VERSION_MASK 0xc0
#define WESP_FLAG_ENCRYPTED 0x20
#define WESP_FLAG_PADDED 0x10

struct ethhdr {
	__u8 h_dest[6];
	__u8 h_source[6];
	__be16 h_proto;
};

struct vlanhdr {
	__be16 tci;
	__be16 encap_proto;
};

struct udphdr {
	__be16 source;
	__be16 dest;
	__be16 len;
	__be16 check;
};

/* Verdicts by SA, written by userspace. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct espy_flow_key);
	__type(value, struct espy_verdict);
} verdicts SEC(".maps");

/* Per-flow counters; the slot is stored in the verdict. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 65537);
	__type(key, __u32);
	__type(value, struct espy_flow_stats);
} flow_stats SEC(".maps");

/* Which slots' flows had packets since userspace last looked (espy_seen).
 * Memory-mapped by userspace; sized to the slots at load. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1025);
	__uint(map_flags, ESPY_BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct espy_seen);
} flow_seen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ESPY_EXIT_MAX);
	__type(key, enum espy_exit_reason);
	__type(value, __u64);
} exit_counters SEC(".maps");

/* Samples sent per unknown flow. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct espy_flow_key);
	__type(value, __u32);
} pending SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct espy_inner_key);
	__type(value, struct espy_inner_rule);
} inner_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct espy_config);
} config SEC(".maps");

/* The compiled SPD (policy/bpf/policy.h): two complete sets, the active one
 * named by espy_policy_ctl (policy_maps.h). */
#define ESPY_POLICY_SET(n)                                                        \
	struct {                                                                  \
		__uint(type, BPF_MAP_TYPE_ARRAY);                                 \
		__uint(max_entries, 1);                                           \
		__type(key, __u32);                                               \
		__type(value, struct espy_policy_meta);                           \
	} espy_policy_meta##n SEC(".maps");                                       \
	struct {                                                                  \
		__uint(type, BPF_MAP_TYPE_ARRAY);                                 \
		__uint(max_entries, ESPY_POLICY_MAX_TABLES);                      \
		__type(key, __u32);                                               \
		__type(value, struct espy_policy_table);                          \
	} espy_policy_tables##n SEC(".maps");                                     \
	struct {                                                                  \
		__uint(type, BPF_MAP_TYPE_ARRAY);                                 \
		__uint(max_entries, ESPY_POLICY_MAX_RANGES);                      \
		__type(key, __u32);                                               \
		__type(value, struct espy_policy_range);                          \
	} espy_policy_ranges##n SEC(".maps");                                     \
	struct {                                                                  \
		__uint(type, BPF_MAP_TYPE_HASH);                                  \
		__uint(max_entries, ESPY_POLICY_MAX_KEYS);                        \
		__uint(map_flags, ESPY_BPF_F_NO_PREALLOC);                        \
		__type(key, struct espy_policy_key);                              \
		__type(value, struct espy_policy_bucket);                         \
	} espy_policy_keys##n SEC(".maps");                                       \
	struct {                                                                  \
		__uint(type, BPF_MAP_TYPE_ARRAY);                                 \
		__uint(max_entries, ESPY_POLICY_MAX_TABLES);                      \
		__type(key, __u32);                                               \
		__type(value, struct espy_policy_bloom);                          \
	} espy_policy_bloom##n SEC(".maps");

ESPY_POLICY_SET(0)
ESPY_POLICY_SET(1)

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} espy_policy_ctl SEC(".maps");

/* The SPD cache (RFC 4301 section 4.4.1's idea, in the kernel): the compiled
 * SPD's answer by inner 5-tuple, valid under one control word. Sized at load
 * (Config.SPDCacheEntries); 0 there turns the cache off. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct espy_inner_key);
	__type(value, struct espy_spd_cached);
} spd_cache SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ESPY_PSTAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} espy_policy_stats SEC(".maps");

/* Per-CPU GCRA state of the sample rate limiter: theoretical arrival time. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} sample_bucket SEC(".maps");

/* Samples to userspace: one ring shared by all CPUs, sized at load
 * (Config.SampleRingBytes). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} samples SEC(".maps");

/* Per-CPU room to assemble a sample: bpf_ringbuf_output copies from map
 * memory or the stack, not from the packet, and a frame does not fit the
 * 512-byte stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct espy_sample_buf);
} sample_scratch SEC(".maps");

/* Bridge mode: egress ifindex by ingress ifindex. */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32);
} bridge_ports SEC(".maps");

static __always_inline void *at(void *data, void *data_end, __u32 off, __u32 len)
{
	void *p;

	if (off > ESPY_OFF_MAX)
		return 0;
	/* Hide the check from the compiler so that it keeps the mask: the
	 * verifier needs the bound on the very register added to data. */
	asm volatile("" : "+r"(off));
	off &= ESPY_OFF_MAX;
	p = data + off;
	if (p + len > data_end)
		return 0;
	return p;
}

/*
 * bound_off forgets what the verifier knows about off beyond its bound.
 * Without it every path through the extension-header walk carries a
 * different exact offset range, no two verifier states match and their
 * number grows exponentially with ESPY_MAX_EXT_HDRS. Offsets above the bound
 * become ESPY_OFF_MAX + 1, which at() rejects.
 */
static __always_inline __u32 bound_off(__u32 off)
{
	if (off > ESPY_OFF_MAX)
		off = ESPY_OFF_MAX + 1;
	asm volatile("" : "+r"(off));
	return off & (2 * ESPY_OFF_MAX + 1);
}

/* pkt_ptr returns len bytes of the frame at off, or NULL. */
static __always_inline void *pkt_ptr(struct xdp_md *ctx, __u32 off, __u32 len)
{
	return at((void *)(long)ctx->data, (void *)(long)ctx->data_end, off, len);
}

static __always_inline int finish(struct xdp_md *ctx, const struct espy_config *cfg,
				  enum espy_exit_reason reason, int drop)
{
	__u32 r = reason;
	__u64 *c = bpf_map_lookup_elem(&exit_counters, &r);

	if (c)
		*c += 1;
	if (drop)
		return XDP_DROP;
	if (cfg->bridge)
		return bpf_redirect_map(&bridge_ports, ctx->ingress_ifindex, XDP_PASS);
	return XDP_PASS;
}

static __always_inline int is_vlan(__be16 proto)
{
	return proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD) ||
	       proto == bpf_htons(ETH_P_QINQ1);
}

static __always_inline int is_ext_hdr(__u8 nh)
{
	return nh == IPPROTO_HOPOPTS || nh == IPPROTO_ROUTING || nh == IPPROTO_DSTOPTS ||
	       nh == IPPROTO_FRAGMENT;
}

static __always_inline int has_ports(__u8 proto)
{
	return proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_SCTP ||
	       proto == IPPROTO_UDPLITE || proto == IPPROTO_DCCP;
}

/*
 * sample_allowed is a per-CPU GCRA: a virtual-scheduling token bucket that
 * keeps one timestamp instead of a token count and a refill time.
 */
static __always_inline int sample_allowed(const struct espy_config *cfg)
{
	__u32 zero = 0;
	__u64 *tat, now, t;

	if (!cfg->sample_interval_ns)
		return 1;
	tat = bpf_map_lookup_elem(&sample_bucket, &zero);
	if (!tat)
		return 0;
	now = bpf_ktime_get_ns();
	t = *tat;
	if (t < now)
		t = now;
	if (t - now > cfg->sample_burst_ns)
		return 0;
	*tat = t + cfg->sample_interval_ns;
	return 1;
}

/* What the parser learnt about an IPsec frame; offsets from the frame start. */
struct pkt {
	struct espy_flow_key key;
	__u32 frame_len;
	__u32 l3_off;      /* outer IP header */
	__u32 esp_off;     /* ESP header (SPI) */
	__u32 end;         /* end of the ESP packet: IP or UDP length, not frame length */
	__u32 payload_off; /* ESP-NULL: payload past the IV */
	__u32 icv_len;
	__s32 want_nh;     /* next header announced by WESP, or -1 */
	__u32 mode;        /* enum espy_mode */
	__u32 slot;        /* flow_stats slot of the flow's verdict, or 0 */
};

/*
 * send_sample copies the frame to userspace through the ring buffer, within
 * the per-CPU rate limit, and returns the exit reason that tells how it went.
 *
 * The ring buffer's default (adaptive) notification wakes the reader only
 * when it has consumed everything before this record, that is when it is
 * idle: a lone sample wakes it at once, while during a flood, when the
 * reader is busy, records are written without a wakeup. A perf buffer
 * wakes the reader for every record, which cost the CPU running XDP an
 * interrupt and an inter-processor wakeup per sample (most of a sample's
 * kernel cost in a VM). The price is one copy of the frame into per-CPU
 * scratch memory (bpf_xdp_load_bytes) before the copy into the ring.
 */
static __always_inline enum espy_exit_reason send_sample(struct xdp_md *ctx,
							 const struct espy_config *cfg,
							 const struct pkt *pk)
{
	struct espy_sample_buf *b;
	__u32 zero = 0, cap;

	if (!sample_allowed(cfg))
		return ESPY_EXIT_SAMPLE_RATELIMITED;
	b = bpf_map_lookup_elem(&sample_scratch, &zero);
	if (!b)
		return ESPY_EXIT_SAMPLE_LOST;
	cap = pk->frame_len < cfg->snaplen ? pk->frame_len : cfg->snaplen;
	if (cap < 1 || cap > ESPY_MAX_SNAPLEN)
		return ESPY_EXIT_SAMPLE_LOST;
	b->hdr.key = pk->key;
	b->hdr.ifindex = ctx->ingress_ifindex;
	b->hdr.orig_len = pk->frame_len;
	b->hdr.cap_len = cap;
	b->hdr.l3_off = pk->l3_off;
	b->hdr.esp_off = pk->esp_off;
	if (bpf_xdp_load_bytes(ctx, 0, b->frame, cap))
		return ESPY_EXIT_SAMPLE_LOST;
	if (bpf_ringbuf_output(&samples, b, sizeof(b->hdr) + cap, 0))
		return ESPY_EXIT_SAMPLE_LOST;
	return ESPY_EXIT_PENDING_SAMPLED;
}

/*
 * unknown handles a flow without a verdict: sample it, then fail open or
 * closed. It and null_flow are global functions: the verifier checks each
 * once on its own instead of once per call site and parser path, which
 * keeps verification time and the instruction count far from the limits.
 */
__attribute__((noinline)) int unknown(struct xdp_md *ctx, const struct pkt *pk)
{
	const struct espy_flow_key *key;
	const struct espy_config *cfg;
	enum espy_exit_reason why;
	__u32 zero = 0, *cnt, seen;

	cfg = bpf_map_lookup_elem(&config, &zero);
	if (!ctx || !pk || !cfg)
		return XDP_ABORTED;
	key = &pk->key;
	cnt = bpf_map_lookup_elem(&pending, key);
	seen = cnt ? *cnt : 0;
	if (seen >= cfg->sample_count)
		return finish(ctx, cfg, ESPY_EXIT_PENDING_OVER_LIMIT, cfg->fail_closed);
	why = send_sample(ctx, cfg, pk);
	if (why != ESPY_EXIT_PENDING_SAMPLED)
		return finish(ctx, cfg, why, cfg->fail_closed);

	if (cnt) {
		__sync_fetch_and_add(cnt, 1);
	} else {
		__u32 one = 1;
		bpf_map_update_elem(&pending, key, &one, BPF_NOEXIST);
	}
	return finish(ctx, cfg, ESPY_EXIT_PENDING_SAMPLED, cfg->fail_closed);
}

/*
 * punt handles an ESP-NULL packet of a decided flow that the kernel's inner
 * policy cannot decide (ESPY_POLICY_PUNT, or a policy too large for the
 * maps): a copy goes to userspace within the sample rate limit but beyond
 * the per-flow sample count, and the frame gets the fail mode. The exit
 * reasons are the sampling ones; espy_policy_stats counts punts apart.
 */
__attribute__((noinline)) int punt(struct xdp_md *ctx, const struct pkt *pk)
{
	const struct espy_config *cfg;
	__u32 zero = 0;

	cfg = bpf_map_lookup_elem(&config, &zero);
	if (!ctx || !pk || !cfg)
		return XDP_ABORTED;
	if (!cfg->sample_count)
		return finish(ctx, cfg, ESPY_EXIT_PENDING_OVER_LIMIT, cfg->fail_closed);
	return finish(ctx, cfg, send_sample(ctx, cfg, pk), cfg->fail_closed);
}

/* mark_seen sets the slot's byte in flow_seen. The byte is read first so
 * that a busy flow writes the shared cache line once per userspace look,
 * not once per packet. */
static __always_inline void mark_seen(__u32 slot)
{
	__u32 idx = slot / 64;
	struct espy_seen *w = bpf_map_lookup_elem(&flow_seen, &idx);
	__u8 *b;

	if (!w)
		return;
	b = &w->b[slot & 63];
	if (!*b)
		*b = 1;
}

static __always_inline void count_flow(const struct espy_verdict *v, __u32 frame_len)
{
	struct espy_flow_stats *st;
	__u32 slot = v->slot;

	if (!slot)
		return;
	st = bpf_map_lookup_elem(&flow_stats, &slot);
	if (!st)
		return;
	st->packets += 1;
	st->bytes += frame_len;
	mark_seen(slot);
}

/*
 * unparsed ends a packet of an ESP-NULL flow that fails the null parse:
 * pad length beyond the payload, pad bytes other than 1, 2, 3, …,
 * transport-mode next header outside userspace's set or payload too short
 * for it, inner header unreadable; why is ESPY_EXIT_NULL_UNPARSED, or
 * ESPY_EXIT_WESP_MISMATCH when the WESP header disagrees with the flow's
 * verdict or the ESP trailer. A flow decided null also counts it in its
 * slot, which is what userspace's inline revocation watches (RFC 5879
 * section 4.3 rates): for it a WESP mismatch is a packet that does not
 * parse under the verdict, as heuristics' goodNull has it.
 */
static __always_inline int unparsed_why(struct xdp_md *ctx, const struct espy_config *cfg,
					__u32 slot, enum espy_exit_reason why)
{
	struct espy_flow_stats *st;

	if (slot) {
		st = bpf_map_lookup_elem(&flow_stats, &slot);
		if (st)
			st->unparsed += 1;
	}
	return finish(ctx, cfg, why, cfg->fail_closed);
}

static __always_inline int unparsed(struct xdp_md *ctx, const struct espy_config *cfg, __u32 slot)
{
	return unparsed_why(ctx, cfg, slot, ESPY_EXIT_NULL_UNPARSED);
}

static __always_inline int encrypted(struct xdp_md *ctx, const struct espy_config *cfg,
				     const struct espy_verdict *v)
{
	__u8 a = v && v->action_encrypted ? v->action_encrypted : cfg->encrypted_action;

	if (a == ESPY_ACTION_DROP)
		return finish(ctx, cfg, ESPY_EXIT_ENCRYPTED_DROP, 1);
	if (a == ESPY_ACTION_COUNT)
		return finish(ctx, cfg, ESPY_EXIT_ENCRYPTED_COUNT, 0);
	return finish(ctx, cfg, ESPY_EXIT_ENCRYPTED_PASS, 0);
}

/* Internal action: the kernel cannot decide, punt to userspace. */
#define ESPY_ACTION_PUNT 0xff

static __always_inline void policy_stat(__u32 i)
{
	__u64 *c = bpf_map_lookup_elem(&espy_policy_stats, &i);

	if (c)
		*c += 1;
}

static __always_inline int is_icmp(__u8 proto)
{
	return proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6;
}

/* The state of one compiled-policy lookup: the packet's key, its fields
 * decoded once, and the best range so far. */
struct policy_walk {
	struct espy_policy_key k;
	__u32 best_prio;
	__u32 flags;
	__u16 sport, dport;
	__u8 family, proto;
	__u8 found;
	__u8 action;
};

/* le128 is a <= b for 128-bit numbers as two words, high word first. */
static __always_inline int le128(const __u64 *a, const __u64 *b)
{
	return a[0] < b[0] || (a[0] == b[0] && a[1] <= b[1]);
}

static __always_inline int range_matches(const struct espy_policy_range *r,
					 const struct policy_walk *w)
{
	return w->family >= r->family_lo && w->family <= r->family_hi &&
	       w->proto >= r->proto_lo && w->proto <= r->proto_hi &&
	       w->sport >= r->sport_lo && w->sport <= r->sport_hi &&
	       w->dport >= r->dport_lo && w->dport <= r->dport_hi &&
	       w->k.label >= r->label_lo && w->k.label <= r->label_hi &&
	       le128(r->src_lo, w->k.src) && le128(w->k.src, r->src_hi) &&
	       le128(r->dst_lo, w->k.dst) && le128(w->k.dst, r->dst_hi);
}

/*
 * ESPY_POLICY_WALK(n) defines the lookup of policy.h over map set n: a
 * bpf_loop callback for one table (the outer loop's body, with the bucket
 * loop inside) and the global function policy_walk<n>, verified once each.
 * It returns the deciding range's action, or 0x100 | the miss action.
 */
#define ESPY_POLICY_WALK(n)                                                       \
	static long policy_table##n(__u64 index, void *arg)                       \
	{                                                                         \
		const struct espy_policy_bucket *b;                               \
		const struct espy_policy_bloom *bl;                               \
		const struct espy_policy_table *t;                                \
		struct policy_walk *w = arg;                                      \
		struct espy_policy_key mk;                                        \
		__u32 i = index, j;                                               \
		__u64 h;                                                          \
                                                                                  \
		t = bpf_map_lookup_elem(&espy_policy_tables##n, &i);              \
		if (!t)                                                           \
			return 1;                                                 \
		if (w->found && t->min_prio >= w->best_prio)                      \
			return 1; /* nothing better left */                       \
		mk.table = i;                                                     \
		mk.label = w->k.label & t->mask.label;                            \
		mk.meta = w->k.meta & t->mask.meta;                               \
		mk.src[0] = w->k.src[0] & t->mask.src[0];                         \
		mk.src[1] = w->k.src[1] & t->mask.src[1];                         \
		mk.dst[0] = w->k.dst[0] & t->mask.dst[0];                         \
		mk.dst[1] = w->k.dst[1] & t->mask.dst[1];                         \
		bl = bpf_map_lookup_elem(&espy_policy_bloom##n, &i);              \
		if (!bl)                                                          \
			return 1;                                                 \
		h = espy_policy_bloom_hash(&mk);                                  \
		if (!(bl->w[(h >> 6) & (ESPY_POLICY_BLOOM_WORDS - 1)] & (1ULL << (h & 63)))) \
			return 0; /* no key of this table: skip the probe */      \
		b = bpf_map_lookup_elem(&espy_policy_keys##n, &mk);               \
		if (!b)                                                           \
			return 0;                                                 \
		for (j = 0; j < ESPY_POLICY_BUCKET; j++) {                        \
			const struct espy_policy_range *r;                        \
			__u32 ri;                                                 \
                                                                                  \
			if (j >= b->count)                                        \
				break;                                            \
			ri = b->idx[j];                                           \
			r = bpf_map_lookup_elem(&espy_policy_ranges##n, &ri);     \
			if (!r)                                                   \
				break;                                            \
			if (w->found && r->prio >= w->best_prio)                  \
				break; /* the bucket is sorted */                 \
			if (range_matches(r, w)) {                                \
				w->found = 1;                                     \
				w->best_prio = r->prio;                           \
				w->action = r->action;                            \
				/* Nothing of another table beats a               \
				 * final hit; disjoint: the first one. */         \
				return r->final ||                                \
				       (w->flags & ESPY_POLICY_F_DISJOINT);       \
			}                                                         \
		}                                                                 \
		/* No new hit: an earlier one was neither final nor disjoint. */  \
		return 0;                                                         \
	}                                                                         \
                                                                                  \
	__attribute__((noinline)) int policy_walk##n(const struct espy_policy_key *k) \
	{                                                                         \
		const struct espy_policy_meta *m;                                 \
		struct policy_walk w = {};                                        \
		__u32 zero = 0, nt;                                               \
                                                                                  \
		m = bpf_map_lookup_elem(&espy_policy_meta##n, &zero);             \
		if (!k || !m)                                                     \
			return 0x100 | ESPY_POLICY_PUNT;                          \
		w.k = *k;                                                         \
		w.flags = m->flags;                                               \
		w.family = k->meta >> 56;                                         \
		w.proto = k->meta >> 48;                                          \
		w.sport = k->meta >> 32;                                          \
		w.dport = k->meta >> 16;                                          \
		nt = m->ntables;                                                  \
		if (nt > ESPY_POLICY_MAX_TABLES)                                  \
			nt = ESPY_POLICY_MAX_TABLES;                              \
		bpf_loop(nt, policy_table##n, &w, 0);                             \
		if (w.found)                                                      \
			return w.action;                                          \
		return 0x100 | m->miss_action;                                    \
	}

ESPY_POLICY_WALK(0)
ESPY_POLICY_WALK(1)

/* addr_words stores an inner key's address as policy.h's two words. */
static __always_inline void addr_words(__u64 *w, const __u8 *a, __u8 family)
{
	__u64 hi, lo;
	__u32 v4;

	if (family == 4) {
		__builtin_memcpy(&v4, a, 4);
		w[0] = 0;
		w[1] = bpf_ntohl(v4);
		return;
	}
	__builtin_memcpy(&hi, a, 8);
	__builtin_memcpy(&lo, a + 8, 8);
	w[0] = bpf_be64_to_cpu(hi);
	w[1] = bpf_be64_to_cpu(lo);
}

/*
 * policy_classify looks the inner 5-tuple up in the published compiled SPD
 * and returns an espy_action, ESPY_ACTION_DEFAULT for "no policy or the
 * policy says nothing" or ESPY_ACTION_PUNT. icmp is type << 8 | code for
 * ICMP and ICMPv6, which the exact stage keys with ports 0.
 *
 * The control word is read before and after the walk: if a publication
 * flipped the sets in between, the set walked may have been rewritten while
 * it was read, so the walk is repeated (twice at most, then punted).
 */
static __always_inline __u8 spd_action(__u8 r)
{
	switch (r) {
	case ESPY_POLICY_NONE:
		return ESPY_ACTION_DEFAULT;
	case ESPY_POLICY_PROTECT:
	case ESPY_POLICY_BYPASS:
	case ESPY_POLICY_ALLOW:
		return ESPY_ACTION_PASS;
	case ESPY_POLICY_DISCARD:
	case ESPY_POLICY_DROP:
		return ESPY_ACTION_DROP;
	case ESPY_POLICY_LOG:
		return ESPY_ACTION_COUNT;
	}
	return ESPY_ACTION_PUNT;
}

__attribute__((noinline)) int policy_classify(const struct espy_inner_key *ik, __u32 icmp,
					     const struct espy_config *cfg)
{
	struct espy_policy_key k = {};
	struct espy_inner_key ck;
	struct espy_spd_cached *hit;
	__u32 zero = 0, sport, dport;
	__u64 *ctl, c1, c2 = 0;
	int i, r;
	__u8 a;

	ctl = bpf_map_lookup_elem(&espy_policy_ctl, &zero);
	if (!ik || !ctl || !cfg)
		return ESPY_ACTION_DEFAULT;
	sport = ik->sport;
	dport = ik->dport;
	if (is_icmp(ik->proto)) {
		sport = icmp & 0xffff;
		dport = 0;
	}
	c1 = *(volatile __u64 *)ctl;
	if (c1 & ESPY_POLICY_CTL_PUNT) {
		policy_stat(ESPY_PSTAT_PUNT);
		return ESPY_ACTION_PUNT;
	}
	if (!(c1 & ESPY_POLICY_CTL_LOADED)) {
		policy_stat(ESPY_PSTAT_DEFAULT);
		return ESPY_ACTION_DEFAULT;
	}
	/* The cache key is the inner key with ICMP's type and code where the
	 * SPD sees them, so ICMP messages of different types do not share an
	 * answer. */
	ck = *ik;
	ck.sport = sport;
	ck.dport = dport;
	hit = cfg->spd_cache_off ? NULL : bpf_map_lookup_elem(&spd_cache, &ck);
	if (hit && hit->ctl == c1) {
		policy_stat(ESPY_PSTAT_CACHE_HIT);
		if (hit->action == ESPY_ACTION_PUNT)
			policy_stat(ESPY_PSTAT_PUNT);
		return hit->action;
	}
	k.meta = (__u64)ik->family << 56 | (__u64)ik->proto << 48 | (__u64)sport << 32 |
		 (__u64)dport << 16;
	addr_words(k.src, ik->src, ik->family);
	addr_words(k.dst, ik->dst, ik->family);

	for (i = 0; i < 3; i++) {
		c1 = *(volatile __u64 *)ctl;
		if (c1 & ESPY_POLICY_CTL_PUNT) {
			policy_stat(ESPY_PSTAT_PUNT);
			return ESPY_ACTION_PUNT;
		}
		if (!(c1 & ESPY_POLICY_CTL_LOADED)) {
			policy_stat(ESPY_PSTAT_DEFAULT);
			return ESPY_ACTION_DEFAULT;
		}
		if (c1 & ESPY_POLICY_CTL_SET1)
			r = policy_walk1(&k);
		else
			r = policy_walk0(&k);
		c2 = *(volatile __u64 *)ctl;
		if (c1 == c2)
			break;
		policy_stat(ESPY_PSTAT_RETRY);
		r = 0x100 | ESPY_POLICY_PUNT;
	}
	policy_stat(r & 0x100 ? ESPY_PSTAT_MISS : ESPY_PSTAT_HIT);
	a = spd_action(r & 0xff);
	if (a == ESPY_ACTION_PUNT)
		policy_stat(ESPY_PSTAT_PUNT);
	/* Only an answer of one whole walk under an unchanged control word
	 * (c2 of the last try) is cached; a raced walk is punted, not kept. */
	if (c1 == c2 && !cfg->spd_cache_off) {
		struct espy_spd_cached v = { .ctl = c1, .action = a };

		bpf_map_update_elem(&spd_cache, &ck, &v, BPF_ANY);
	}
	return a;
}

/*
 * inner_policy is the one place the inner 5-tuple is classified: first the
 * exact 5-tuple map (SetInnerRule: operator pinholes and userspace's
 * answers for punted tuples), then the compiled SPD, then the configured
 * default.
 */
static __always_inline __u8 inner_policy(const struct espy_inner_key *ik, __u32 icmp,
					 const struct espy_config *cfg)
{
	struct espy_inner_rule *r = NULL;
	int a;

	/* Userspace says whether the exact stage holds anything: an empty
	 * hash still costs a hash of the 40-byte key, a quarter of a decided
	 * null flow's packet. */
	if (cfg->exact_rules)
		r = bpf_map_lookup_elem(&inner_rules, ik);

	if (r) {
		__sync_fetch_and_add(&r->hits, 1);
		if (r->action) {
			policy_stat(ESPY_PSTAT_EXACT);
			return r->action;
		}
	}
	a = policy_classify(ik, icmp, cfg);
	if (a != ESPY_ACTION_DEFAULT)
		return a;
	return cfg->inner_default ? cfg->inner_default : ESPY_ACTION_PASS;
}

static __always_inline int load_ports(struct xdp_md *ctx, __u32 off, __u32 pend,
				      struct espy_inner_key *ik)
{
	__u8 *p;

	if (off + 4 > pend || !(p = pkt_ptr(ctx, off, 4)))
		return -1;
	ik->sport = (__u16)p[0] << 8 | p[1];
	ik->dport = (__u16)p[2] << 8 | p[3];
	return 0;
}

/*
 * load_l4 reads what the policy keys on past the inner IP header: the ports
 * into ik, or for ICMP and ICMPv6 type << 8 | code into *icmp (the exact
 * stage keys ICMP with ports 0, the SPD with IKE's ICMP encoding).
 */
static __always_inline int load_l4(struct xdp_md *ctx, __u32 off, __u32 pend,
				   struct espy_inner_key *ik, __u32 *icmp)
{
	__u8 *p;

	if (has_ports(ik->proto))
		return load_ports(ctx, off, pend, ik);
	if (!is_icmp(ik->proto))
		return 0;
	if (off + 2 > pend || !(p = pkt_ptr(ctx, off, 2)))
		return -1;
	*icmp = (__u32)p[0] << 8 | p[1];
	return 0;
}

/* low_bytes returns a mask of the n (at most 8) low bytes of a word. */
static __always_inline __u64 low_bytes(__u32 n)
{
	return n >= 8 ? ~0ULL : (1ULL << (n * 8)) - 1;
}

/*
 * pkt_be64 loads 8 packet bytes at p as one big-endian number with a single
 * 8-byte load. p need not be aligned: the verifier allows unaligned packet
 * access where the architecture handles it (x86-64, arm64), which the 4-byte
 * SPI loads already rely on. __builtin_memcpy compiles to 8 byte loads and
 * 14 shifts and ors, which made a 255-byte pad cost 80 ns more than none.
 */
static __always_inline __u64 pkt_be64(const __u8 *p)
{
	return bpf_be64_to_cpu(*(const __u64 *)p);
}

/*
 * pad_ok reports whether the pad_len bytes before the trailer at toff are
 * RFC 4303 section 2.4's default padding, 1, 2, 3, …, pad_len, which NULL
 * encryption always uses and userspace's readTrailer requires: every byte,
 * one ESPY_PAD_CHECK-byte window at a time from the trailer back, stopping
 * at the first wrong window. The caller has checked that the pad lies
 * within the payload. The windows are fixed-size reads, so the verifier
 * sees constant lengths: with the trailer at least ESPY_PAD_SPAN bytes into
 * the frame, one bounds check of that span covers them all (20 ns less on
 * a 255-byte pad than a check per window); closer to the frame start, each
 * window is checked on its own. The last window may start in the payload or
 * the headers (toff is at least the Ethernet, IP and ESP headers into the
 * frame), whose bytes are masked off.
 *
 * No byte loop: a window is two big-endian words, whose byte k counted from
 * the low end must be rem - k (high word) and rem - 8 - k (low word) when
 * rem pad bytes remain before the window's end. rem * 0x0101…01 minus
 * 0x0706…00 (or 0x0f0e…08) builds those bytes exactly wherever they are at
 * least 1, that is in every byte the mask keeps: a borrow starts only in a
 * byte where rem - k is negative and moves up, away from the kept bytes
 * (rem is at most 255, so the product has no carries). Windows before the
 * last are all pad: their expected words are the previous window's minus
 * 0x1010…10 and need no mask. A bounded loop rather than bpf_loop: a window
 * is a dozen instructions, less than bpf_loop's indirect call, and the
 * verifier walks at most ESPY_PAD_CHUNKS of them once, in a global
 * function (null_trailer).
 */
static __always_inline int pad_ok(struct xdp_md *ctx, __u32 toff, __u8 pad_len)
{
	__u64 rep = (__u64)pad_len * 0x0101010101010101ULL;
	__u64 want_hi = rep - 0x0706050403020100ULL;
	__u64 want_lo = rep - 0x0f0e0d0c0b0a0908ULL;
	__u32 rem = pad_len, off = toff;
	__u64 hi, lo;
	__u8 *w, *span;
	int i;

	if (!rem)
		return 1;
	/* Usually the trailer is at least ESPY_PAD_SPAN bytes into the frame
	 * (a pad of 200 bytes or more always is): one bounds check then covers
	 * every window, each at a constant distance below the trailer. */
	if (toff >= ESPY_PAD_SPAN && (span = pkt_ptr(ctx, toff - ESPY_PAD_SPAN, ESPY_PAD_SPAN))) {
		/* Keep clang from deriving the windows from the pointer before
		 * the bounds check, which the verifier gives no range. */
		asm volatile("" : "+r"(span));
		for (i = 0; i < ESPY_PAD_CHUNKS; i++) {
			w = span + ESPY_PAD_SPAN - ESPY_PAD_CHECK * (i + 1);
			hi = pkt_be64(w + 8) ^ want_hi;
			lo = pkt_be64(w) ^ want_lo;
			if (rem <= ESPY_PAD_CHECK)
				return !((hi & low_bytes(rem)) | (lo & low_bytes(rem > 8 ? rem - 8 : 0)));
			if (hi | lo)
				return 0;
			rem -= ESPY_PAD_CHECK;
			want_hi -= 0x1010101010101010ULL;
			want_lo -= 0x1010101010101010ULL;
		}
		return 1;
	}
	for (i = 0; i < ESPY_PAD_CHUNKS; i++) {
		if (off < ESPY_PAD_CHECK || !(w = pkt_ptr(ctx, off - ESPY_PAD_CHECK, ESPY_PAD_CHECK)))
			return 0;
		hi = pkt_be64(w + 8) ^ want_hi;
		lo = pkt_be64(w) ^ want_lo;
		if (rem <= ESPY_PAD_CHECK)
			return !((hi & low_bytes(rem)) | (lo & low_bytes(rem > 8 ? rem - 8 : 0)));
		if (hi | lo)
			return 0;
		rem -= ESPY_PAD_CHECK;
		off -= ESPY_PAD_CHECK;
		want_hi -= 0x1010101010101010ULL;
		want_lo -= 0x1010101010101010ULL;
	}
	return 1;
}

/*
 * null_trailer reads and checks the ESP trailer of an ESP-NULL packet: it
 * fits after the payload start and before the ICV, its pad length fits the
 * payload, the pad bytes are the default padding, and for WESP the next
 * header is the one the WESP header announced. It returns pad_len << 8 |
 * next header, -2 when the WESP header announced another next header, or
 * -1. It is a global function so that its registers are
 * not live in null_flow, whose stack frame is in the deepest call chain
 * (null_flow, the policy walk and its bpf_loop callback), which the
 * 512-byte limit leaves no room to grow: the pad check inlined there cost
 * 16 bytes of spills.
 */
__attribute__((noinline)) int null_trailer(struct xdp_md *ctx, const struct pkt *pk)
{
	__u32 toff, end, icv_len, payload_off;
	__u8 *tr;

	if (!ctx || !pk)
		return -1;
	payload_off = pk->payload_off;
	end = pk->end;
	icv_len = pk->icv_len;
	if (end < icv_len + 2)
		return -1;
	toff = end - icv_len - 2;
	if (toff < payload_off || !(tr = pkt_ptr(ctx, toff, 2)))
		return -1;
	if (pk->want_nh >= 0 && pk->want_nh != tr[1])
		return -2;
	if (toff - payload_off < tr[0])
		return -1;
	if (!pad_ok(ctx, toff, tr[0]))
		return -1;
	return (int)tr[0] << 8 | tr[1];
}

/*
 * transport_min returns the shortest payload userspace accepts for a
 * transport-mode next header, or -1 for a next header it does not accept:
 * heuristics/candidate.go's knownNextHeader and minInner (RFC 5879's set),
 * so that what the fast path counts good Engine.Watch would count good too.
 * UDP-Lite and DCCP are not in the set: their transport-mode packets are
 * unparsed, as userspace would see them.
 */
static __always_inline int transport_min(__u8 nh)
{
	switch (nh) {
	case IPPROTO_TCP:
	case IPPROTO_IPIP:
		return 20;
	case IPPROTO_UDP:
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
	case IPPROTO_ESP:
	case IPPROTO_FRAGMENT:
	case IPPROTO_DSTOPTS:
		return 8;
	case IPPROTO_SCTP:
		return 12;
	case IPPROTO_IPV6:
		return 40;
	case IPPROTO_GRE:
		return 4;
	}
	return -1;
}

/* inner_ip reads the inner header of a tunnel-mode payload at off..pend. */
static __always_inline int inner_ip(struct xdp_md *ctx, __u32 off, __u32 pend, __u8 nh,
				    struct espy_inner_key *ik, __u32 *icmp)
{
	if (nh == IPPROTO_IPIP) {
		__u32 ihl;
		__u8 *h;

		if (off + 20 > pend || !(h = pkt_ptr(ctx, off, 20)))
			return -1;
		ihl = (h[0] & 0xf) * 4;
		if ((h[0] >> 4) != 4 || ihl < 20)
			return -1;
		ik->family = 4;
		ik->proto = h[9];
		__builtin_memcpy(ik->src, &h[12], 4);
		__builtin_memcpy(ik->dst, &h[16], 4);
		/* Non-first inner fragments carry no ports: looked up with 0. */
		if (((__u16)h[6] << 8 | h[7]) & 0x1fff)
			return 0;
		return load_l4(ctx, off + ihl, pend, ik, icmp);
	}
	if (nh == IPPROTO_IPV6) {
		__u8 proto, *h;
		int i;

		if (off + 40 > pend || !(h = pkt_ptr(ctx, off, 40)))
			return -1;
		if ((h[0] >> 4) != 6)
			return -1;
		ik->family = 6;
		__builtin_memcpy(ik->src, &h[8], 16);
		__builtin_memcpy(ik->dst, &h[24], 16);
		proto = h[6];
		off += 40;
		for (i = 0; i < ESPY_MAX_EXT_HDRS; i++) {
			__u8 *e;

			if (!is_ext_hdr(proto))
				break;
			if (off + 4 > pend || !(e = pkt_ptr(ctx, off, 4)))
				return -1;
			if (proto == IPPROTO_FRAGMENT) {
				if (((__u16)e[2] << 8 | e[3]) & 0xfff8) {
					ik->proto = e[0];
					return 0;
				}
				off += 8;
			} else {
				off += ((__u32)e[1] + 1) * 8;
			}
			proto = e[0];
			off = bound_off(off);
		}
		if (is_ext_hdr(proto))
			return -1;
		ik->proto = proto;
		return load_l4(ctx, off, pend, ik, icmp);
	}
	return -1;
}

/*
 * null_flow opens an ESP-NULL packet whose payload (past the IV) starts at
 * payload_off and whose ESP packet ends at end. want_nh is the next header
 * the WESP header announced, or -1.
 */
__attribute__((noinline)) int null_flow(struct xdp_md *ctx, const struct pkt *pk)
{
	__u32 zero = 0, pend, payload_off, icmp = 0;
	struct espy_inner_key ik = {};
	const struct espy_config *cfg;
	int tunnel, tr;
	__u8 nh, a;

	cfg = bpf_map_lookup_elem(&config, &zero);
	if (!ctx || !pk || !cfg)
		return XDP_ABORTED;
	tr = null_trailer(ctx, pk);
	if (tr == -2)
		return unparsed_why(ctx, cfg, pk->slot, ESPY_EXIT_WESP_MISMATCH);
	if (tr < 0)
		return unparsed(ctx, cfg, pk->slot);
	nh = tr & 0xff;
	payload_off = pk->payload_off;
	/* null_trailer checked that end - icv_len - 2 - pad_len >= payload_off. */
	pend = pk->end - pk->icv_len - 2 - (tr >> 8);

	/* RFC 4303 dummy packet (traffic flow confidentiality): nothing inside. */
	if (nh == IPPROTO_NONE)
		return finish(ctx, cfg, ESPY_EXIT_NULL_ALLOW, 0);

	tunnel = pk->mode == ESPY_MODE_TUNNEL ||
		 (pk->mode == ESPY_MODE_UNKNOWN && (nh == IPPROTO_IPIP || nh == IPPROTO_IPV6));
	if (tunnel) {
		if (inner_ip(ctx, payload_off, pend, nh, &ik, &icmp))
			return unparsed(ctx, cfg, pk->slot);
	} else {
		int need = transport_min(nh);

		if (need < 0 || pend - payload_off < (__u32)need)
			return unparsed(ctx, cfg, pk->slot);
		ik.family = pk->key.family;
		ik.proto = nh;
		__builtin_memcpy(ik.src, pk->key.src, 16);
		__builtin_memcpy(ik.dst, pk->key.dst, 16);
		if (load_l4(ctx, payload_off, pend, &ik, &icmp))
			return unparsed(ctx, cfg, pk->slot);
	}

	a = inner_policy(&ik, icmp, cfg);
	if (a == ESPY_ACTION_PUNT)
		return punt(ctx, pk);
	if (a == ESPY_ACTION_DROP)
		return finish(ctx, cfg, ESPY_EXIT_NULL_DROP, 1);
	if (a == ESPY_ACTION_COUNT)
		return finish(ctx, cfg, ESPY_EXIT_NULL_COUNT, 0);
	return finish(ctx, cfg, ESPY_EXIT_NULL_ALLOW, 0);
}

/* esp handles an ESP header at pk->esp_off. */
static __always_inline int esp(struct xdp_md *ctx, const struct espy_config *cfg, struct pkt *pk)
{
	struct espy_verdict *v = bpf_map_lookup_elem(&verdicts, &pk->key);

	if (!v || (v->kind != ESPY_VERDICT_NULL && v->kind != ESPY_VERDICT_ENCRYPTED))
		return unknown(ctx, pk);
	count_flow(v, pk->frame_len);
	if (v->kind == ESPY_VERDICT_ENCRYPTED)
		return encrypted(ctx, cfg, v);
	pk->payload_off = pk->esp_off + 8 + v->iv_len;
	pk->icv_len = v->icv_len;
	pk->want_nh = -1;
	pk->mode = v->mode;
	pk->slot = v->slot;
	return null_flow(ctx, pk);
}

/*
 * wesp_agrees reports whether a WESP header (next header nh, HeaderLen
 * hdr_len, TrailerLen trl_len, flags; skip bytes of WESP header and
 * padding) describes the flow as its null verdict v does (RFC 5840 section
 * 2): not encrypted, TrailerLen the verdict's ICV length, HeaderLen the
 * WESP header, its padding, the ESP header and the verdict's IV. These are
 * userspace's checks (heuristics' goodNull). A verdict in tunnel mode also
 * wants next header 4 or 41 (or 59, a dummy packet). There is no single
 * next header to compare with in transport mode: one SA carries any
 * protocol its selectors allow (RFC 4301 section 4.4.2), so TCP and UDP
 * may alternate, and userspace accepts that.
 */
static __always_inline int wesp_agrees(const struct espy_verdict *v, __u8 nh, __u8 hdr_len,
				       __u8 trl_len, __u8 flags, __u32 skip)
{
	if (flags & WESP_FLAG_ENCRYPTED)
		return 0;
	if (trl_len != v->icv_len || hdr_len != skip + 8 + v->iv_len)
		return 0;
	if (v->mode == ESPY_MODE_TUNNEL && nh != IPPROTO_IPIP && nh != IPPROTO_IPV6 &&
	    nh != IPPROTO_NONE)
		return 0;
	return 1;
}

/*
 * wesp handles a WESP header at woff. WESP describes itself, so the program
 * decides without userspace; a verdict entry, where present, adds per-flow
 * counters, and an encrypted one overrides the E flag. The header of a flow
 * with a null verdict must agree with the verdict (wesp_agrees), else the
 * packet is ESPY_EXIT_WESP_MISMATCH and counts as unparsed: a flow whose
 * WESP header changes under a cached verdict is not the flow userspace
 * decided, and its revocation takes the verdict away.
 */
static __always_inline int wesp(struct xdp_md *ctx, const struct espy_config *cfg, struct pkt *pk,
				__u32 woff)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct espy_verdict *v;
	__u8 *w, nh, hdr_len, trl_len, flags, kind;
	__u32 skip;
	__be32 *e;

	w = at(data, data_end, woff, 4);
	if (!w || woff + 4 > pk->end)
		return finish(ctx, cfg, ESPY_EXIT_MALFORMED, cfg->fail_closed);
	nh = w[0];
	hdr_len = w[1];
	trl_len = w[2];
	flags = w[3];
	if (flags & WESP_VERSION_MASK)
		return finish(ctx, cfg, ESPY_EXIT_MALFORMED, cfg->fail_closed);
	skip = flags & WESP_FLAG_PADDED ? 8 : 4;
	pk->esp_off = woff + skip;
	e = at(data, data_end, pk->esp_off, 8);
	if (!e || pk->esp_off + 8 > pk->end || !e[0])
		return finish(ctx, cfg, ESPY_EXIT_MALFORMED, cfg->fail_closed);
	pk->key.spi = bpf_ntohl(e[0]);

	v = bpf_map_lookup_elem(&verdicts, &pk->key);
	kind = flags & WESP_FLAG_ENCRYPTED ? ESPY_VERDICT_ENCRYPTED : ESPY_VERDICT_NULL;
	pk->mode = ESPY_MODE_UNKNOWN;
	if (v) {
		count_flow(v, pk->frame_len);
		if (v->kind == ESPY_VERDICT_NULL || v->kind == ESPY_VERDICT_ENCRYPTED)
			kind = v->kind;
		if (v->kind == ESPY_VERDICT_NULL)
			pk->slot = v->slot;
		pk->mode = v->mode;
	}
	if (kind == ESPY_VERDICT_ENCRYPTED)
		return encrypted(ctx, cfg, v);
	if (v && v->kind == ESPY_VERDICT_NULL && !wesp_agrees(v, nh, hdr_len, trl_len, flags, skip))
		return unparsed_why(ctx, cfg, pk->slot, ESPY_EXIT_WESP_MISMATCH);
	if (hdr_len < skip + 8)
		return unparsed(ctx, cfg, pk->slot);
	pk->payload_off = woff + hdr_len;
	pk->icv_len = trl_len;
	pk->want_nh = nh;
	return null_flow(ctx, pk);
}

SEC("xdp")
int espy_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct pkt pk = {};
	__u32 zero = 0, frame_len, off, l3_off, end;
	const struct espy_config *cfg;
	int first_frag = 0;
	struct ethhdr *eth;
	__be16 h_proto;
	__u8 proto;
	int i;

	cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg)
		return XDP_ABORTED;
	frame_len = data_end - data;

	eth = data;
	if ((void *)(eth + 1) > data_end)
		return finish(ctx, cfg, ESPY_EXIT_MALFORMED, cfg->fail_closed);
	h_proto = eth->h_proto;
	off = sizeof(*eth);
#pragma unroll
	for (i = 0; i < ESPY_MAX_VLANS; i++) {
		struct vlanhdr *vh;

		if (!is_vlan(h_proto))
			break;
		vh = at(data, data_end, off, sizeof(*vh));
		if (!vh)
			return finish(ctx, cfg, ESPY_EXIT_MALFORMED, cfg->fail_closed);
		h_proto = vh->encap_proto;
		off += sizeof(*vh);
	}
	if (is_vlan(h_proto))
		return finish(ctx, cfg, ESPY_EXIT_MALFORMED, cfg->fail_closed);
	l3_off = off;

	if (h_proto == bpf_htons(ETH_P_IP)) {
		__u8 *ip = at(data, data_end, off, 20);
		__u32 ihl, tot;
		__u16 frag;

		if (!ip)
			return finish(ctx, cfg, ESPY_EXIT_MALFORMED, cfg->fail_closed);
		ihl = (ip[0] & 0xf) * 4;
		tot = (__u32)ip[2] << 8 | ip[3];
		if ((ip[0] >> 4) != 4 || ihl < 20 || tot < ihl || l3_off + tot > frame_len)
			return finish(ctx, cfg, ESPY_EXIT_MALFORMED, cfg->fail_closed);
		end = l3_off + tot;
		frag = (__u16)ip[6] << 8 | ip[7];
		if (frag & 0x1fff)
			return finish(ctx, cfg, ESPY_EXIT_FRAGMENT, 0);
		first_frag = frag & 0x2000;
		proto = ip[9];
		pk.key.family = 4;
		__builtin_memcpy(pk.key.src, &ip[12], 4);
		__builtin_memcpy(pk.key.dst, &ip[16], 4);
		off += ihl;
	} else if (h_proto == bpf_htons(ETH_P_IPV6)) {
		__u8 *ip6 = at(data, data_end, off, 40);
		__u32 plen;

		if (!ip6)
			return finish(ctx, cfg, ESPY_EXIT_MALFORMED, cfg->fail_closed);
		plen = (__u32)ip6[4] << 8 | ip6[5];
		/* plen 0 is a jumbogram, which no XDP frame can hold. */
		if ((ip6[0] >> 4) != 6 || plen == 0 || l3_off + 40 + plen > frame_len)
			return finish(ctx, cfg, ESPY_EXIT_MALFORMED, cfg->fail_closed);
		end = l3_off + 40 + plen;
		proto = ip6[6];
		pk.key.family = 6;
		__builtin_memcpy(pk.key.src, &ip6[8], 16);
		__builtin_memcpy(pk.key.dst, &ip6[24], 16);
		off += 40;
		for (i = 0; i < ESPY_MAX_EXT_HDRS; i++) {
			__u8 *h;

			if (!is_ext_hdr(proto))
				break;
			h = at(data, data_end, off, 8);
			if (!h || off + 8 > end)
				return finish(ctx, cfg, ESPY_EXIT_MALFORMED, cfg->fail_closed);
			if (proto == IPPROTO_FRAGMENT) {
				__u16 fo = (__u16)h[2] << 8 | h[3];

				if (fo & 0xfff8)
					return finish(ctx, cfg, ESPY_EXIT_FRAGMENT, 0);
				first_frag = fo & 1;
				asm volatile("" : "+r"(first_frag));
				off += 8;
			} else {
				off += ((__u32)h[1] + 1) * 8;
			}
			proto = h[0];
			off = bound_off(off);
		}
		if (is_ext_hdr(proto))
			return finish(ctx, cfg, ESPY_EXIT_EXTHDR_LIMIT, cfg->fail_closed);
	} else {
		return finish(ctx, cfg, ESPY_EXIT_NON_ESP, 0);
	}

	pk.frame_len = frame_len;
	pk.l3_off = l3_off;
	pk.end = end;
	if (proto == IPPROTO_ESP) {
		__be32 *e;

		if (first_frag)
			return finish(ctx, cfg, ESPY_EXIT_FRAGMENT, 0);
		e = at(data, data_end, off, 8);
		if (!e || off + 8 > end || !e[0])
			return finish(ctx, cfg, ESPY_EXIT_MALFORMED, cfg->fail_closed);
		pk.key.encap = ESPY_ENCAP_NONE;
		pk.key.spi = bpf_ntohl(e[0]);
		pk.esp_off = off;
		return esp(ctx, cfg, &pk);
	}
	if (proto == IPPROTO_WESP) {
		if (first_frag)
			return finish(ctx, cfg, ESPY_EXIT_FRAGMENT, 0);
		pk.key.encap = ESPY_ENCAP_WESP;
		return wesp(ctx, cfg, &pk, off);
	}
	if (proto == IPPROTO_UDP) {
		struct udphdr *uh = at(data, data_end, off, sizeof(*uh));
		__u16 sport, dport, ulen;
		__be32 *m;

		if (!uh || off + sizeof(*uh) > end)
			return finish(ctx, cfg, ESPY_EXIT_MALFORMED, cfg->fail_closed);
		sport = bpf_ntohs(uh->source);
		dport = bpf_ntohs(uh->dest);
		if (sport == PORT_IKE || dport == PORT_IKE)
			return finish(ctx, cfg, ESPY_EXIT_IKE, 0);
		if (sport != PORT_NATT && dport != PORT_NATT)
			return finish(ctx, cfg, ESPY_EXIT_NON_ESP, 0);
		if (first_frag)
			return finish(ctx, cfg, ESPY_EXIT_FRAGMENT, 0);
		ulen = bpf_ntohs(uh->len);
		if (ulen < sizeof(*uh) || off + ulen > end)
			return finish(ctx, cfg, ESPY_EXIT_MALFORMED, cfg->fail_closed);
		end = off + ulen;
		pk.end = end;
		off += sizeof(*uh);
		if (ulen == sizeof(*uh) + 1) {
			__u8 *b = at(data, data_end, off, 1);

			if (b && *b == 0xff)
				return finish(ctx, cfg, ESPY_EXIT_KEEPALIVE, 0);
			return finish(ctx, cfg, ESPY_EXIT_MALFORMED, cfg->fail_closed);
		}
		m = at(data, data_end, off, 4);
		if (!m || off + 4 > end)
			return finish(ctx, cfg, ESPY_EXIT_MALFORMED, cfg->fail_closed);
		/* RFC 3948 non-ESP marker: the datagram is IKE. */
		if (*m == 0)
			return finish(ctx, cfg, ESPY_EXIT_IKE, 0);
		pk.key.sport = sport;
		pk.key.dport = dport;
		if (*m == bpf_htonl(2)) {
			pk.key.encap = ESPY_ENCAP_WESP_UDP;
			return wesp(ctx, cfg, &pk, off + 4);
		}
		if (off + 8 > end || !at(data, data_end, off, 8))
			return finish(ctx, cfg, ESPY_EXIT_MALFORMED, cfg->fail_closed);
		pk.key.encap = ESPY_ENCAP_UDP;
		pk.key.spi = bpf_ntohl(*m);
		pk.esp_off = off;
		return esp(ctx, cfg, &pk);
	}
	return finish(ctx, cfg, ESPY_EXIT_NON_ESP, 0);
}
