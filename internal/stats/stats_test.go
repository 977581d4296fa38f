package stats

import (
	"errors"
	"math"
	"testing"
)

func near(t *testing.T, what string, got, want, tol float64) {
	t.Helper()
	if math.Abs(got-want) > tol {
		t.Errorf("%s = %.12g, want %.12g (±%g)", what, got, want, tol)
	}
}

// A 30/200 = 0.15, B 50/200 = 0.25; pooled p = 80/400 = 0.2,
// se = sqrt(0.2*0.8*(2/200)) = 0.04, z = 0.10/0.04 = 2.5,
// p = erfc(2.5/sqrt 2) = 0.0124193306515523.
func TestTwoProportionTextbook(t *testing.T) {
	r, err := TwoProportion(Proportion{30, 200}, Proportion{50, 200})
	if err != nil {
		t.Fatal(err)
	}
	near(t, "z", r.Z, 2.5, 1e-12)
	near(t, "p", r.P, 0.012419330651552278, 1e-12)
	// Swapping the groups flips the sign only.
	r2, _ := TwoProportion(Proportion{50, 200}, Proportion{30, 200})
	near(t, "swapped z", r2.Z, -2.5, 1e-12)
}

func TestTwoProportionDegenerate(t *testing.T) {
	if _, err := TwoProportion(Proportion{0, 0}, Proportion{1, 10}); !errors.Is(err, ErrNoData) {
		t.Errorf("empty group: err = %v, want ErrNoData", err)
	}
	r, err := TwoProportion(Proportion{0, 100}, Proportion{0, 80})
	if err != nil || r.P != 1 || r.Z != 0 {
		t.Errorf("no errors in either group: %+v %v, want Z 0 P 1", r, err)
	}
}

// scipy's documentation example (scipy.stats.mannwhitneyu): males
// [19, 22, 16, 29, 24] against females [20, 11, 17, 12]: U = 17, exact
// p = 0.1111 (= 14/126: 7 of the 126 splits have U >= 17, doubled), and
// with method="asymptotic" p = 0.11134688653314041 (z = (17-10-0.5)/
// sqrt(4*5*10/12) = 1.59217).
func TestMannWhitneyScipyExample(t *testing.T) {
	females := []float64{20, 11, 17, 12}
	males := []float64{19, 22, 16, 29, 24}
	r, err := MannWhitney(females, males)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Exact {
		t.Errorf("small samples without ties should use the exact distribution")
	}
	near(t, "U", r.U, 17, 0)
	near(t, "exact p", r.P, 1.0/9, 1e-12)

	// The normal approximation (used past MaxExact or with ties) on the
	// same data gives scipy's method="asymptotic" value.
	asym := normalU(females, males)
	near(t, "asymptotic p", asym.P, 0.11134688653314041, 1e-12)
	near(t, "asymptotic z", asym.Z, 1.5921683328090657, 1e-12)
}

// normalU forces the normal approximation (for the reference above).
func normalU(a, b []float64) UResult {
	rs := rankSums(a, b)
	na, nb := float64(len(a)), float64(len(b))
	n := na + nb
	u := rs.rankB - nb*(nb+1)/2
	z := (u - na*nb/2 - 0.5) / math.Sqrt(na*nb/12*((n+1)-rs.tieTerm/(n*(n-1))))
	return UResult{U: u, Z: z, P: TwoSidedP(z)}
}

// Separated groups of 5: U = 25, exact p = 2/C(10,5) = 2/252.
func TestMannWhitneyExactSeparated(t *testing.T) {
	r, err := MannWhitney([]float64{1, 2, 3, 4, 5}, []float64{6, 7, 8, 9, 10})
	if err != nil {
		t.Fatal(err)
	}
	near(t, "U", r.U, 25, 0)
	near(t, "p", r.P, 2.0/252, 1e-12)
	r, _ = MannWhitney([]float64{6, 7, 8, 9, 10}, []float64{1, 2, 3, 4, 5})
	near(t, "U reversed", r.U, 0, 0)
	near(t, "p reversed", r.P, 2.0/252, 1e-12)
}

// Ties: A [1 2 2 3], B [2 3 3 4 5]. U = 17. Enumerating the 126 ways to
// choose B's 5 positions among the 9 pooled values gives the permutation
// variance of U = 15.5556, which is what the tie-corrected formula gives:
// 4*5/12 * (10 - (3^3-3 + 3^3-3)/(9*8)) = 15.5556. z = (17-10-0.5)/
// sqrt(15.5556) = 1.64805, p = 0.0993422478534653.
func TestMannWhitneyTies(t *testing.T) {
	r, err := MannWhitney([]float64{1, 2, 2, 3}, []float64{2, 3, 3, 4, 5})
	if err != nil {
		t.Fatal(err)
	}
	if r.Exact {
		t.Errorf("ties must use the normal approximation")
	}
	near(t, "U", r.U, 17, 0)
	near(t, "z", r.Z, 1.6480507967206073, 1e-12)
	near(t, "p", r.P, 0.09934224785346527, 1e-12)
}

func TestMannWhitneyAllEqual(t *testing.T) {
	a := make([]float64, 30)
	b := make([]float64, 30)
	r, err := MannWhitney(a, b)
	if err != nil || r.P != 1 {
		t.Errorf("all equal: %+v %v, want P 1", r, err)
	}
	if _, err := MannWhitney(nil, b); !errors.Is(err, ErrNoData) {
		t.Errorf("empty group: err = %v, want ErrNoData", err)
	}
}

// Large samples use the normal approximation; a shift of B by 20 % is
// detected, no shift is not.
func TestMannWhitneyLargeShift(t *testing.T) {
	var a, b, same []float64
	for i := 0; i < 64; i++ {
		v := 100 + float64((i*37)%50)
		a = append(a, v)
		b = append(b, v*1.2)
		same = append(same, v+0.001*float64(i%3))
	}
	r, _ := MannWhitney(a, b)
	if r.Exact || r.Z <= 0 || r.P > 0.01 {
		t.Errorf("20%% shift: %+v, want a significant positive z", r)
	}
	r, _ = MannWhitney(a, same)
	if r.P < 0.5 {
		t.Errorf("no shift: %+v, want p well above 0.05", r)
	}
}

// Two strata, A 5/100 vs B 15/100 and A 2/50 vs B 8/60:
// stratum 1: E = 100*20/200 = 10, Var = 100*100*20*180/(200^2*199) = 4.5226;
// stratum 2: E = 60*10/110 = 5.4545, Var = 50*60*10*100/(110^2*109) = 2.2747;
// z = (5 + 2.5455)/sqrt(6.7973) = 2.89414, p = 0.0038020101049082.
func TestCMHTwoStrata(t *testing.T) {
	r, err := CMH([]Stratum{
		{A: Proportion{5, 100}, B: Proportion{15, 100}},
		{A: Proportion{2, 50}, B: Proportion{8, 60}},
	})
	if err != nil {
		t.Fatal(err)
	}
	near(t, "z", r.Z, 2.894138011851425, 1e-12)
	near(t, "p", r.P, 0.003802010104908202, 1e-12)
}

// With one stratum the CMH statistic is the pooled z scaled by
// sqrt((N-1)/N) (it uses the hypergeometric variance).
func TestCMHOneStratumMatchesTwoProportion(t *testing.T) {
	a, b := Proportion{30, 200}, Proportion{50, 200}
	c, _ := CMH([]Stratum{{A: a, B: b}})
	z, _ := TwoProportion(a, b)
	near(t, "cmh z", c.Z, z.Z*math.Sqrt(399.0/400), 1e-12)
	if _, err := CMH([]Stratum{{A: Proportion{0, 0}, B: Proportion{1, 2}}}); !errors.Is(err, ErrNoData) {
		t.Errorf("no stratum with data: err = %v, want ErrNoData", err)
	}
}

// With one stratum van Elteren's z is the Mann–Whitney z without the
// continuity correction (the weight cancels).
func TestVanElterenOneStratum(t *testing.T) {
	a, b := []float64{1, 2, 2, 3}, []float64{2, 3, 3, 4, 5}
	r, err := VanElteren([]Samples{{A: a, B: b}})
	if err != nil {
		t.Fatal(err)
	}
	// (17 - 10) / sqrt(15.5556)
	near(t, "z", r.Z, 7/math.Sqrt(140.0/9), 1e-12)
	// Two copies of the stratum: numerator and variance double, z grows
	// by sqrt 2.
	r2, _ := VanElteren([]Samples{{A: a, B: b}, {A: a, B: b}})
	near(t, "z of two strata", r2.Z, r.Z*math.Sqrt2, 1e-12)
	if _, err := VanElteren([]Samples{{A: a}}); !errors.Is(err, ErrNoData) {
		t.Errorf("no stratum with both groups: err = %v, want ErrNoData", err)
	}
}
