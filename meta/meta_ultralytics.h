/*
 * meta_ultralytics.h - the hyperparameter space of Ultralytics YOLO (v8,
 * YOLO11; package release 8.4.x).
 *
 * Each row: X(name, gain, lower, upper, base, doc). The rows, their order,
 * bounds and gains are the default search space of the package's Tuner
 * (ultralytics/engine/tuner.py: gain 1 unless the space gives one); base
 * is the value of ultralytics/cfg/default.yaml, the hyp the Tuner's first
 * iteration trains. Keys shared with YOLOv5 (lr0, box, ...) are the same
 * database columns; dfl, bgr, cutmix and close_mosaic are Ultralytics'
 * own. close_mosaic is an integer (epochs): it is rounded after mutation.
 */
#define META_UL_HYPS(X)                                                                            \
	X(lr0, 1.0, 1e-5, 1e-2, 0.01, "initial learning rate")                                     \
	X(lrf, 1.0, 0.01, 1.0, 0.01, "final learning rate as a fraction of lr0")                   \
	X(momentum, 0.3, 0.7, 0.98, 0.937, "SGD momentum, or Adam beta1")                          \
	X(weight_decay, 1.0, 0.0, 0.001, 0.0005, "optimizer weight decay")                         \
	X(warmup_epochs, 1.0, 0.0, 5.0, 3.0, "warmup length in epochs (may be fractional)")        \
	X(warmup_momentum, 1.0, 0.0, 0.95, 0.8, "momentum at the start of warmup")                 \
	X(box, 1.0, 1.0, 20.0, 7.5, "box loss gain")                                               \
	X(cls, 1.0, 0.1, 4.0, 0.5, "class loss gain")                                              \
	X(cls_pw, 1.0, 0.0, 1.0, 0.0, "class weights power (0 off, 1 inverse frequency)")          \
	X(dfl, 1.0, 0.4, 12.0, 1.5, "distribution focal loss gain")                                \
	X(hsv_h, 1.0, 0.0, 0.1, 0.015, "hue jitter (fraction)")                                    \
	X(hsv_s, 1.0, 0.0, 0.9, 0.7, "saturation jitter (fraction)")                               \
	X(hsv_v, 1.0, 0.0, 0.9, 0.4, "value (brightness) jitter (fraction)")                       \
	X(degrees, 1.0, 0.0, 45.0, 0.0, "random rotation range (+/- degrees)")                     \
	X(translate, 1.0, 0.0, 0.9, 0.1, "random translation (+/- fraction)")                      \
	X(scale, 1.0, 0.0, 0.95, 0.5, "random scale (+/- gain)")                                   \
	X(shear, 1.0, 0.0, 10.0, 0.0, "random shear (+/- degrees)")                                \
	X(perspective, 1.0, 0.0, 0.001, 0.0, "random perspective (+/- fraction)")                  \
	X(flipud, 1.0, 0.0, 1.0, 0.0, "probability of an up-down flip")                            \
	X(fliplr, 1.0, 0.0, 1.0, 0.5, "probability of a left-right flip")                          \
	X(bgr, 1.0, 0.0, 1.0, 0.0, "probability of an RGB/BGR channel swap")                       \
	X(mosaic, 1.0, 0.0, 1.0, 1.0, "probability of a 4-image mosaic")                           \
	X(mixup, 1.0, 0.0, 1.0, 0.0, "probability of mixup")                                       \
	X(cutmix, 1.0, 0.0, 1.0, 0.0, "probability of cutmix")                                     \
	X(copy_paste, 1.0, 0.0, 1.0, 0.0, "segment copy-paste fraction")                           \
	X(close_mosaic, 1.0, 0.0, 10.0, 10.0, "epochs at the end trained without mosaic")

/* Ultralytics keys that YOLOv5 lacks: they follow YOLOv5's keys in enum meta_key. */
#define META_UL_ONLY(X) X(dfl) X(bgr) X(cutmix) X(close_mosaic)
