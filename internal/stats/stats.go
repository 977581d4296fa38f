package stats

import (
	"errors"
	"math"
	"sort"
)

// ErrNoData is returned when a test has too little data to say anything
// (an empty group, no variance at all).
var ErrNoData = errors.New("not enough data for the test")

// TwoSidedP is the two-sided p-value of a standard normal statistic z.
func TwoSidedP(z float64) float64 {
	return math.Erfc(math.Abs(z) / math.Sqrt2)
}

// Proportion is x successes (errors, failed probes) out of n trials.
type Proportion struct {
	X, N float64
}

// Rate is X/N (0 when N is 0).
func (p Proportion) Rate() float64 {
	if p.N <= 0 {
		return 0
	}
	return p.X / p.N
}

// ZResult is a normal-approximation test's outcome: Z is signed (positive
// when the second group, B, is higher), P two-sided.
type ZResult struct {
	Z float64
	P float64
}

// TwoProportion is the pooled two-proportion z-test of a against b:
//
//	z = (pb - pa) / sqrt(p(1-p)(1/na + 1/nb)),  p = (xa+xb)/(na+nb)
//
// When both groups have the same proportion at 0 or 1 there is no variance
// and no evidence of a difference: Z 0, P 1. An empty group is ErrNoData.
func TwoProportion(a, b Proportion) (ZResult, error) {
	if a.N <= 0 || b.N <= 0 || a.X < 0 || b.X < 0 || a.X > a.N || b.X > b.N {
		return ZResult{}, ErrNoData
	}
	p := (a.X + b.X) / (a.N + b.N)
	se := math.Sqrt(p * (1 - p) * (1/a.N + 1/b.N))
	if se == 0 {
		return ZResult{Z: 0, P: 1}, nil
	}
	z := (b.Rate() - a.Rate()) / se
	return ZResult{Z: z, P: TwoSidedP(z)}, nil
}

// Stratum is one stratum (device class) of a stratified proportion test.
type Stratum struct {
	A, B Proportion
}

// CMH is the Cochran–Mantel–Haenszel test of a common difference between
// A and B across strata (no continuity correction). Each stratum is the
// 2x2 table (B: x, n-x; A: x, n-x); with a = B's count,
//
//	E[a] = nB*m/N,  Var[a] = nA*nB*m*(N-m) / (N^2 (N-1)),  m = xA+xB
//	z = sum(a - E[a]) / sqrt(sum Var[a])
//
// Strata without variance (or with an empty group) add nothing. With no
// stratum left the result is Z 0, P 1 when some stratum had data, ErrNoData
// otherwise.
func CMH(strata []Stratum) (ZResult, error) {
	var num, v float64
	data := false
	for _, s := range strata {
		if s.A.N <= 0 || s.B.N <= 0 {
			continue
		}
		data = true
		n := s.A.N + s.B.N
		m := s.A.X + s.B.X
		if n < 2 {
			continue
		}
		num += s.B.X - s.B.N*m/n
		v += s.A.N * s.B.N * m * (n - m) / (n * n * (n - 1))
	}
	if !data {
		return ZResult{}, ErrNoData
	}
	if v <= 0 {
		return ZResult{Z: 0, P: 1}, nil
	}
	z := num / math.Sqrt(v)
	return ZResult{Z: z, P: TwoSidedP(z)}, nil
}

// UResult is a Mann–Whitney U test's outcome. U is B's statistic (the
// number of pairs in which B's sample is larger, ties counting one half),
// so U above nA*nB/2 means B tends to be larger. Z is signed the same way
// (0 for an exact test), P two-sided, Exact set when P comes from the
// exact distribution.
type UResult struct {
	U     float64
	Z     float64
	P     float64
	Exact bool
}

// MaxExact bounds the group sizes for which MannWhitney computes the exact
// distribution (when there are no ties); larger samples use the normal
// approximation.
const MaxExact = 20

// MannWhitney tests whether B's samples tend to be larger or smaller than
// A's. Without ties and with both groups of at most MaxExact samples the
// p-value is exact; otherwise it is the normal approximation with the tie
// correction and a continuity correction of 1/2:
//
//	z = (U - nA nB/2 ∓ 1/2) / sqrt(nA nB/12 * ((N+1) - sum(t^3-t)/(N(N-1))))
//
// Either group empty is ErrNoData.
func MannWhitney(a, b []float64) (UResult, error) {
	na, nb := len(a), len(b)
	if na == 0 || nb == 0 {
		return UResult{}, ErrNoData
	}
	rs := rankSums(a, b)
	u := rs.rankB - float64(nb*(nb+1))/2
	if rs.tieTerm == 0 && na <= MaxExact && nb <= MaxExact {
		return UResult{U: u, P: exactUP(na, nb, u), Exact: true}, nil
	}
	n := float64(na + nb)
	mean := float64(na*nb) / 2
	variance := float64(na*nb) / 12 * ((n + 1) - rs.tieTerm/(n*(n-1)))
	if variance <= 0 {
		// Every sample is equal: no difference.
		return UResult{U: u, Z: 0, P: 1}, nil
	}
	d := u - mean
	switch {
	case d > 0.5:
		d -= 0.5
	case d < -0.5:
		d += 0.5
	default:
		d = 0
	}
	z := d / math.Sqrt(variance)
	return UResult{U: u, Z: z, P: math.Min(1, TwoSidedP(z))}, nil
}

// Samples is one stratum of a stratified rank test.
type Samples struct {
	A, B []float64
}

// VanElteren is the stratified Wilcoxon rank-sum test (van Elteren 1960):
// each stratum's rank sum of B is weighted by 1/(N_k+1), so that every
// stratum counts about as much as its information and a large class does
// not drown a small one:
//
//	T = sum W_k/(N_k+1),  E[T] = sum nB_k/2,
//	Var[T] = sum nA_k nB_k/(12 (N_k+1)^2) * ((N_k+1) - sum(t^3-t)/(N_k(N_k-1)))
//
// with the normal approximation (no continuity correction). Strata with
// an empty group add nothing; none left is ErrNoData.
func VanElteren(strata []Samples) (ZResult, error) {
	var num, v float64
	data := false
	for _, s := range strata {
		na, nb := len(s.A), len(s.B)
		if na == 0 || nb == 0 {
			continue
		}
		data = true
		n := float64(na + nb)
		rs := rankSums(s.A, s.B)
		w := 1 / (n + 1)
		num += w * (rs.rankB - float64(nb)*(n+1)/2)
		if n > 1 {
			v += w * w * float64(na*nb) / 12 * ((n + 1) - rs.tieTerm/(n*(n-1)))
		}
	}
	if !data {
		return ZResult{}, ErrNoData
	}
	if v <= 0 {
		return ZResult{Z: 0, P: 1}, nil
	}
	z := num / math.Sqrt(v)
	return ZResult{Z: z, P: TwoSidedP(z)}, nil
}

type ranks struct {
	rankB   float64 // sum of B's ranks (average ranks for ties)
	tieTerm float64 // sum over tie groups of t^3 - t
}

func rankSums(a, b []float64) ranks {
	type obs struct {
		v float64
		b bool
	}
	all := make([]obs, 0, len(a)+len(b))
	for _, v := range a {
		all = append(all, obs{v, false})
	}
	for _, v := range b {
		all = append(all, obs{v, true})
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].v < all[j].v })
	var out ranks
	for i := 0; i < len(all); {
		j := i + 1
		for j < len(all) && all[j].v == all[i].v {
			j++
		}
		avg := float64(i+1+j) / 2 // ranks i+1..j
		if t := float64(j - i); t > 1 {
			out.tieTerm += t*t*t - t
		}
		for k := i; k < j; k++ {
			if all[k].b {
				out.rankB += avg
			}
		}
		i = j
	}
	return out
}

// exactUP is the exact two-sided p-value of U for groups of na and nb
// samples without ties: 2*min(P(U<=u), P(U>=u)), at most 1. The counts
// follow the recurrence c(m, n, u) = c(m-1, n, u-n) + c(m, n-1, u).
func exactUP(na, nb int, u float64) float64 {
	maxU := na * nb
	// prev[n][u] for m-1, cur for m: counts of arrangements.
	counts := make([][]float64, nb+1)
	for n := range counts {
		counts[n] = make([]float64, maxU+1)
		counts[n][0] = 1 // m = 0: only U = 0
	}
	for m := 1; m <= na; m++ {
		next := make([][]float64, nb+1)
		next[0] = make([]float64, maxU+1)
		next[0][0] = 1
		for n := 1; n <= nb; n++ {
			row := make([]float64, maxU+1)
			for k := 0; k <= m*n; k++ {
				c := next[n-1][k]
				if k-n >= 0 {
					c += counts[n][k-n]
				}
				row[k] = c
			}
			next[n] = row
		}
		counts = next
	}
	dist := counts[nb]
	var total, lo, hi float64
	for k, c := range dist {
		total += c
		if float64(k) <= u+1e-9 {
			lo += c
		}
		if float64(k) >= u-1e-9 {
			hi += c
		}
	}
	return math.Min(1, 2*math.Min(lo, hi)/total)
}
