package chart

import (
	"bytes"
	"image/png"
	"math"
	"testing"
)

func TestCDF(t *testing.T) {
	s := CDF("x", []float64{3, 1, 2, 4})
	if s.X[0] != 1 || s.X[3] != 4 || s.Y[0] != 25 || s.Y[3] != 100 {
		t.Errorf("CDF = %+v", s)
	}
}

func TestAxisTicks(t *testing.T) {
	a := newAxis(3, 870, true)
	if a.lo != 1 || a.hi != 1000 {
		t.Errorf("log axis of 3..870 = %v..%v, want 1..1000", a.lo, a.hi)
	}
	if tk := a.ticks(); tk[0] != 1 || tk[len(tk)-1] != 1000 || len(tk) != 10 {
		t.Errorf("log ticks = %v", tk)
	}
	l := newAxis(0, 100, false)
	if l.lo != 0 || l.hi != 100 || l.frac(50) != 0.5 {
		t.Errorf("linear axis = %+v", l)
	}
}

func TestChartsEncodeValidPNGs(t *testing.T) {
	for name, enc := range map[string]func(*bytes.Buffer) error{
		"line": func(b *bytes.Buffer) error {
			return Line{Title: "t", LogX: true, YMax: 100, Series: []Series{CDF("a", []float64{1, 5, 50}), CDF("one", []float64{7})}}.Encode(b)
		},
		"empty line": func(b *bytes.Buffer) error { return Line{Title: "nothing"}.Encode(b) },
		"bars": func(b *bytes.Buffer) error {
			return Bars{Title: "t", LogY: true, Groups: []string{"g1", "g2"},
				Series: []BarSeries{{Name: "a", Values: []float64{1, 1000}}, {Name: "b", Values: []float64{math.NaN(), 3}}}}.Encode(b)
		},
	} {
		var b bytes.Buffer
		if err := enc(&b); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		img, err := png.Decode(&b)
		if err != nil {
			t.Fatalf("%s: not a PNG: %v", name, err)
		}
		if img.Bounds().Dx() != Width || img.Bounds().Dy() != Height {
			t.Errorf("%s: size %v", name, img.Bounds())
		}
	}
}
