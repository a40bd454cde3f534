package metrics

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sbx-run/sbx/internal/image"
)

// ImageLister is the part of the image store that WatchImages reads.
type ImageLister interface {
	List(ctx context.Context) ([]*image.Image, error)
}

var (
	descImages     = prometheus.NewDesc("sbx_images_cached", "Images in the local image cache.", nil, nil)
	descImageBytes = prometheus.NewDesc("sbx_images_cached_bytes", "Unpacked bytes of the cached images (layers shared between images counted once per image).", nil, nil)
)

// WatchImages registers gauges of the image cache, read at scrape time.
func (r *Registry) WatchImages(images ImageLister) {
	r.reg.MustRegister(&imageCollector{images})
}

type imageCollector struct{ images ImageLister }

func (c *imageCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descImages
	ch <- descImageBytes
}

func (c *imageCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	list, err := c.images.List(ctx)
	if err != nil {
		slog.Warn("metrics: list images", "err", err)
		return
	}
	var size int64
	for _, img := range list {
		size += img.Size
	}
	ch <- prometheus.MustNewConstMetric(descImages, prometheus.GaugeValue, float64(len(list)))
	ch <- prometheus.MustNewConstMetric(descImageBytes, prometheus.GaugeValue, float64(size))
}

// ObservePull counts one image pull by result and records its latency. It
// is the image store's Config.OnPull hook; the reference is left out of the
// labels to keep their number bounded.
func (r *Registry) ObservePull(_ string, d time.Duration, err error) {
	result := "ok"
	if err != nil {
		result = reasonOf(err)
		r.errors.WithLabelValues("image", result).Inc()
	}
	r.pulls.WithLabelValues(result).Inc()
	r.pullDur.WithLabelValues(result).Observe(d.Seconds())
}
