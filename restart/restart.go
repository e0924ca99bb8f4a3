// Package restart holds the restart strategies that decide, when a job
// fails, whether and after how long it restarts. They are pure: the time is
// passed in, nothing sleeps.
package restart

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Strategy decides what happens after a failure.
type Strategy interface {
	// OnFailure is called when the job fails at now. It returns how long to
	// wait before restarting, or ok=false (with a reason) when the job must
	// fail for good.
	OnFailure(now time.Time) (delay time.Duration, ok bool, reason string)
	String() string
}

// None never restarts.
func None() Strategy { return none{} }

type none struct{}

func (none) OnFailure(time.Time) (time.Duration, bool, string) {
	return 0, false, "restart strategy is none"
}
func (none) String() string { return "none" }

// FixedDelay restarts at most attempts times, delay apart.
func FixedDelay(attempts int, delay time.Duration) Strategy {
	return &fixedDelay{attempts: attempts, delay: delay}
}

type fixedDelay struct {
	attempts int
	delay    time.Duration
	used     int
}

func (f *fixedDelay) OnFailure(time.Time) (time.Duration, bool, string) {
	if f.used >= f.attempts {
		return 0, false, fmt.Sprintf("fixed-delay restart strategy used all %d attempts", f.attempts)
	}
	f.used++
	return f.delay, true, ""
}

func (f *fixedDelay) String() string {
	return fmt.Sprintf("fixed-delay:attempts=%d,delay=%s", f.attempts, f.delay)
}

// FailureRate restarts after delay unless more than maxFailures failures
// happened within the last interval.
func FailureRate(maxFailures int, interval, delay time.Duration) Strategy {
	return &failureRate{max: maxFailures, interval: interval, delay: delay}
}

type failureRate struct {
	max      int
	interval time.Duration
	delay    time.Duration
	times    []time.Time
}

func (f *failureRate) OnFailure(now time.Time) (time.Duration, bool, string) {
	f.times = append(f.times, now)
	cut := 0
	for cut < len(f.times) && now.Sub(f.times[cut]) > f.interval {
		cut++
	}
	f.times = f.times[cut:]
	if len(f.times) > f.max {
		return 0, false, fmt.Sprintf("failure-rate restart strategy: %d failures within %s (at most %d allowed)", len(f.times), f.interval, f.max)
	}
	return f.delay, true, ""
}

func (f *failureRate) String() string {
	return fmt.Sprintf("failure-rate:max=%d,interval=%s,delay=%s", f.max, f.interval, f.delay)
}

// ExponentialDelay restarts forever, waiting initial, then multiplier times
// longer after each failure, up to max. A failure more than resetAfter after
// the previous one starts again from initial. jitter in [0,1] shortens each
// delay by up to that fraction, deterministically derived from the attempt
// number (so tests are repeatable).
func ExponentialDelay(initial, max time.Duration, multiplier float64, resetAfter time.Duration, jitter float64) Strategy {
	return &exponential{initial: initial, max: max, mult: multiplier, reset: resetAfter, jitter: jitter}
}

type exponential struct {
	initial, max time.Duration
	mult         float64
	reset        time.Duration
	jitter       float64
	current      time.Duration
	last         time.Time
	n            uint64
}

func (e *exponential) OnFailure(now time.Time) (time.Duration, bool, string) {
	if e.current == 0 || (e.reset > 0 && !e.last.IsZero() && now.Sub(e.last) > e.reset) {
		e.current = e.initial
	} else {
		next := time.Duration(math.Min(float64(e.current)*e.mult, float64(e.max)))
		e.current = next
	}
	e.last = now
	e.n++
	d := e.current
	if e.jitter > 0 {
		// A fixed pseudo-random fraction per attempt (splitmix64).
		x := e.n * 0x9e3779b97f4a7c15
		x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
		x = (x ^ (x >> 27)) * 0x94d049bb133111eb
		x ^= x >> 31
		frac := float64(x>>11) / float64(1<<53)
		d -= time.Duration(float64(d) * e.jitter * frac)
	}
	return d, true, ""
}

func (e *exponential) String() string {
	return fmt.Sprintf("exponential-delay:initial=%s,max=%s,multiplier=%g,reset=%s,jitter=%g", e.initial, e.max, e.mult, e.reset, e.jitter)
}

// Parse reads a strategy from text: "none", "fixed-delay:attempts=3,delay=1s",
// "failure-rate:max=3,interval=1m,delay=1s",
// "exponential-delay:initial=1s,max=5m,multiplier=2,reset=1h,jitter=0.1".
// Omitted keys take Flink's defaults. Values that make no sense are
// errors naming the key: attempts < 0, failure-rate max < 1 or interval
// <= 0, a negative delay, an exponential initial <= 0 or max < initial, a
// multiplier < 1, a jitter outside [0,1]. reset=0 never resets.
func Parse(s string) (Strategy, error) {
	name, rest, _ := strings.Cut(strings.TrimSpace(s), ":")
	kv := map[string]string{}
	if rest != "" {
		for _, part := range strings.Split(rest, ",") {
			k, v, ok := strings.Cut(part, "=")
			if !ok {
				return nil, fmt.Errorf("restart strategy %q: %q is not key=value", s, part)
			}
			kv[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	p := parser{s: s, kv: kv}
	var st Strategy
	switch name {
	case "none":
		st = None()
	case "fixed-delay":
		st = FixedDelay(p.int("attempts", math.MaxInt32, 0), p.dur("delay", time.Second, false))
	case "failure-rate":
		st = FailureRate(p.int("max", 1, 1), p.dur("interval", time.Minute, true), p.dur("delay", time.Second, false))
	case "exponential-delay":
		initial, max := p.dur("initial", time.Second, true), p.dur("max", 5*time.Minute, true)
		if p.err == nil && max < initial {
			p.err = fmt.Errorf("restart strategy %q: max=%s%s is less than initial=%s%s", s, max, p.defaulted("max"), initial, p.defaulted("initial"))
		}
		st = ExponentialDelay(initial, max, p.float("multiplier", 2, 1, math.Inf(1)),
			p.dur("reset", time.Hour, false), p.float("jitter", 0.1, 0, 1))
	default:
		return nil, fmt.Errorf("unknown restart strategy %q (want none, fixed-delay, failure-rate or exponential-delay)", name)
	}
	if p.err != nil {
		return nil, p.err
	}
	for k := range kv {
		if !p.used[k] {
			return nil, fmt.Errorf("restart strategy %q: unknown key %q", s, k)
		}
	}
	return st, nil
}

type parser struct {
	s    string
	kv   map[string]string
	used map[string]bool
	err  error
}

func (p *parser) get(k string) (string, bool) {
	if p.used == nil {
		p.used = map[string]bool{}
	}
	p.used[k] = true
	v, ok := p.kv[k]
	return v, ok
}

func (p *parser) fail(k, v, want string) {
	if p.err == nil {
		p.err = fmt.Errorf("restart strategy %q: %s=%q is not %s", p.s, k, v, want)
	}
}

// defaulted marks a value the text did not give, for errors about it.
func (p *parser) defaulted(k string) string {
	if _, ok := p.kv[k]; ok {
		return ""
	}
	return " (the default)"
}

// int reads key k, a whole number >= min.
func (p *parser) int(k string, def, min int) int {
	v, ok := p.get(k)
	if !ok {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < min {
		p.fail(k, v, fmt.Sprintf("a whole number >= %d", min))
	}
	return n
}

// dur reads key k, a duration >= 0, or > 0 when positive.
func (p *parser) dur(k string, def time.Duration, positive bool) time.Duration {
	v, ok := p.get(k)
	if !ok {
		return def
	}
	d, err := time.ParseDuration(v)
	switch {
	case err != nil:
		p.fail(k, v, "a duration with a unit, such as 500ms or 2s")
	case positive && d <= 0:
		p.fail(k, v, "a duration > 0, such as 500ms or 2s")
	case d < 0:
		p.fail(k, v, "a duration >= 0, such as 500ms or 2s")
	}
	return d
}

// float reads key k, a number in [min, max].
func (p *parser) float(k string, def, min, max float64) float64 {
	v, ok := p.get(k)
	if !ok {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < min || f > max {
		if math.IsInf(max, 1) {
			p.fail(k, v, fmt.Sprintf("a number >= %g", min))
		} else {
			p.fail(k, v, fmt.Sprintf("a number from %g to %g", min, max))
		}
	}
	return f
}
