package config

import (
	"fmt"
	"math"
	"strconv"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/espy-dpi/espy/ike"
)

// Lifetimes are a tunnel's IKE and Child SA lifetimes in ike.Config's
// terms: zero is the stack's default, negative turns the timer off.
type Lifetimes struct {
	IKERekey, IKEReauth, IKEOver, IKERand time.Duration
	ChildRekey, ChildLife, ChildRand      time.Duration
	// Child SA volume limits; 0 is off.
	RekeyBytes, LifeBytes, RandBytes       uint64
	RekeyPackets, LifePackets, RandPackets uint64
}

// Apply copies the lifetimes into cfg.
func (l Lifetimes) Apply(cfg *ike.Config) {
	cfg.IKERekeyTime, cfg.IKEReauthTime, cfg.IKEOverTime, cfg.IKERandTime = l.IKERekey, l.IKEReauth, l.IKEOver, l.IKERand
	cfg.ChildRekeyTime, cfg.ChildLifeTime, cfg.ChildRandTime = l.ChildRekey, l.ChildLife, l.ChildRand
	cfg.ChildRekeyBytes, cfg.ChildLifeBytes, cfg.ChildRandBytes = l.RekeyBytes, l.LifeBytes, l.RandBytes
	cfg.ChildRekeyPackets, cfg.ChildLifePackets, cfg.ChildRandPackets = l.RekeyPackets, l.LifePackets, l.RandPackets
}

// Volume is a byte or packet count: a non-negative integer, optionally
// with strongSwan's suffixes K, M or G (powers of 1024).
type Volume uint64

// UnmarshalYAML reads a count such as 500, 4M or 2G.
func (v *Volume) UnmarshalYAML(n *yaml.Node) error {
	s, mul := n.Value, uint64(1)
	if k := len(s); k > 1 {
		switch s[k-1] {
		case 'k', 'K':
			mul = 1 << 10
		case 'm', 'M':
			mul = 1 << 20
		case 'g', 'G':
			mul = 1 << 30
		}
		if mul > 1 {
			s = s[:k-1]
		}
	}
	x, err := strconv.ParseUint(s, 10, 64)
	if err != nil || x > math.MaxUint64/mul {
		return fmt.Errorf("line %d: invalid count %q (want e.g. 1000, 512K, 4G)", n.Line, n.Value)
	}
	*v = Volume(x * mul)
	return nil
}

// volumes validates a tunnel's volume limit keys: a life limit above its
// rekey limit, a jitter below it, as for the times.
func (c *Config) volumes(p string, t Tunnel, out *Lifetimes) error {
	for _, v := range []struct {
		kind              string
		rekey, life, rand Volume
	}{{"bytes", t.RekeyBytes, t.LifeBytes, t.RandBytes}, {"packets", t.RekeyPackets, t.LifePackets, t.RandPackets}} {
		if v.rekey > 0 && v.life > 0 && v.life <= v.rekey {
			return c.fail(p+".life_"+v.kind, "life_%s %d must be above rekey_%s %d", v.kind, v.life, v.kind, v.rekey)
		}
		if v.rand > 0 && v.rekey == 0 {
			return c.fail(p+".rand_"+v.kind, "rand_%s needs a rekey_%s", v.kind, v.kind)
		}
		if v.rand > 0 && v.rand >= v.rekey {
			return c.fail(p+".rand_"+v.kind, "rand_%s %d must be below rekey_%s %d", v.kind, v.rand, v.kind, v.rekey)
		}
	}
	out.RekeyBytes, out.LifeBytes, out.RandBytes = uint64(t.RekeyBytes), uint64(t.LifeBytes), uint64(t.RandBytes)
	out.RekeyPackets, out.LifePackets, out.RandPackets = uint64(t.RekeyPackets), uint64(t.LifePackets), uint64(t.RandPackets)
	return nil
}

// maxLifetime bounds every lifetime key, far beyond any sensible value,
// so that the stack's sums (life time 110 % of rekey time, hard lifetime
// soft time plus over time) cannot overflow.
const maxLifetime = 365 * 24 * time.Hour

// lifetime is one lifetime key as read: absent, 0 (off) or a duration.
type lifetime struct {
	key string
	v   *Duration
}

// set reports whether the key is present and not 0.
func (l lifetime) set() bool { return l.v != nil && *l.v > 0 }

// stack returns the value in ike.Config's terms.
func (l lifetime) stack() time.Duration {
	switch {
	case l.v == nil:
		return 0
	case *l.v == 0:
		return -1
	}
	return time.Duration(*l.v)
}

// effective is the duration the stack will use (absent: def), 0 for off.
func (l lifetime) effective(def time.Duration) time.Duration {
	switch {
	case l.v == nil:
		return def
	case *l.v == 0:
		return 0
	}
	return time.Duration(*l.v)
}

// lifetimes validates a tunnel's lifetime keys (p is its path) against
// each other, with the stack's defaults for the absent ones, so that a
// combination the stack would refuse or silently ignore fails at load.
func (c *Config) lifetimes(p string, t Tunnel) (Lifetimes, error) {
	rekey, life, rand := lifetime{"rekey_time", t.RekeyTime}, lifetime{"life_time", t.LifeTime}, lifetime{"rand_time", t.RandTime}
	ikeRekey, reauth := lifetime{"ike_rekey_time", t.IKERekeyTime}, lifetime{"reauth_time", t.ReauthTime}
	over, ikeRand := lifetime{"over_time", t.OverTime}, lifetime{"ike_rand_time", t.IKERandTime}
	for _, l := range []lifetime{rekey, life, rand, ikeRekey, reauth, over, ikeRand} {
		if l.v != nil && time.Duration(*l.v) > maxLifetime {
			return Lifetimes{}, c.fail(p+"."+l.key, "%s %v is above the maximum %v", l.key, time.Duration(*l.v), maxLifetime)
		}
	}
	out := Lifetimes{
		IKERekey: ikeRekey.stack(), IKEReauth: reauth.stack(), IKEOver: over.stack(), IKERand: ikeRand.stack(),
		ChildRekey: rekey.stack(), ChildLife: life.stack(), ChildRand: rand.stack(),
	}
	if err := c.volumes(p, t, &out); err != nil {
		return out, err
	}
	// Child SA: the hard lifetime must come after the rekey, and the
	// jitter must leave part of the rekey time.
	cr := rekey.effective(ike.DefaultChildRekeyTime)
	if life.set() && cr > 0 && time.Duration(*life.v) <= cr {
		return out, c.fail(p+".life_time", "life_time %v must be above rekey_time %v%s", time.Duration(*life.v), cr, defaultNote(rekey))
	}
	if rand.set() {
		if cr == 0 {
			return out, c.fail(p+".rand_time", "rand_time needs a rekey_time (rekey_time is 0: off)")
		}
		if time.Duration(*rand.v) >= cr {
			return out, c.fail(p+".rand_time", "rand_time %v must be below rekey_time %v%s", time.Duration(*rand.v), cr, defaultNote(rekey))
		}
	}
	// IKE SA: over_time and ike_rand_time act on the soft lifetimes.
	soft := max(ikeRekey.effective(ike.DefaultIKERekeyTime), reauth.effective(0))
	for _, l := range []lifetime{over, ikeRand} {
		if l.set() && soft == 0 {
			return out, c.fail(p+"."+l.key, "%s needs ike_rekey_time or reauth_time (both are off)", l.key)
		}
	}
	if ikeRand.set() {
		// The stack jitters each soft time on its own: the smaller one
		// must keep part of its time.
		for _, l := range []struct {
			lt  lifetime
			def time.Duration
		}{{ikeRekey, ike.DefaultIKERekeyTime}, {reauth, 0}} {
			if d := l.lt.effective(l.def); d > 0 && time.Duration(*ikeRand.v) >= d {
				return out, c.fail(p+".ike_rand_time", "ike_rand_time %v must be below %s %v%s", time.Duration(*ikeRand.v), l.lt.key, d, defaultNote(l.lt))
			}
		}
	}
	return out, nil
}

// defaultNote marks a value the file leaves at its default.
func defaultNote(l lifetime) string {
	if l.v == nil {
		return " (the default)"
	}
	return ""
}
