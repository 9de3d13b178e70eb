/*
 * meta_table.h - the one table of YOLOv5 v7.0 hyperparameters.
 *
 * Each row: X(name, gain, lower, upper, doc). The order is YOLOv5's hyp.yaml
 * key order, with `anchors` last as train.py appends it; evolve.csv columns,
 * database columns, the C struct and hyp.yaml all follow this order.
 * gain 0 freezes a key during mutation; gain, lower and upper are the values
 * of YOLOv5 v7.0's evolution `meta` dictionary.
 */
#define META_HYPS(X)                                                                               \
	X(lr0, 1.0, 1e-5, 1e-1, "starting learning rate (SGD 1e-2, Adam 1e-3)")                    \
	X(lrf, 1.0, 0.01, 1.0, "final learning rate as a fraction of lr0")                         \
	X(momentum, 0.3, 0.6, 0.98, "SGD momentum, or Adam beta1")                                 \
	X(weight_decay, 1.0, 0.0, 0.001, "optimizer weight decay")                                 \
	X(warmup_epochs, 1.0, 0.0, 5.0, "warmup length in epochs (may be fractional)")             \
	X(warmup_momentum, 1.0, 0.0, 0.95, "momentum at the start of warmup")                      \
	X(warmup_bias_lr, 1.0, 0.0, 0.2, "bias learning rate at the start of warmup")              \
	X(box, 1.0, 0.02, 0.2, "box (CIoU) loss gain")                                             \
	X(cls, 1.0, 0.2, 4.0, "class loss gain")                                                   \
	X(cls_pw, 1.0, 0.5, 2.0, "positive weight of the class BCE")                               \
	X(obj, 1.0, 0.2, 4.0, "objectness loss gain (scaled with image size)")                     \
	X(obj_pw, 1.0, 0.5, 2.0, "positive weight of the objectness BCE")                          \
	X(iou_t, 0.0, 0.1, 0.7, "IoU threshold for training targets (unused)")                     \
	X(anchor_t, 1.0, 2.0, 8.0, "largest target/anchor size ratio that matches")                \
	X(fl_gamma, 0.0, 0.0, 2.0, "focal loss gamma, 0 for plain BCE")                            \
	X(hsv_h, 1.0, 0.0, 0.1, "hue jitter (fraction)")                                           \
	X(hsv_s, 1.0, 0.0, 0.9, "saturation jitter (fraction)")                                    \
	X(hsv_v, 1.0, 0.0, 0.9, "value (brightness) jitter (fraction)")                            \
	X(degrees, 1.0, 0.0, 45.0, "random rotation range (+/- degrees)")                          \
	X(translate, 1.0, 0.0, 0.9, "random translation (+/- fraction)")                           \
	X(scale, 1.0, 0.0, 0.9, "random scale (+/- gain)")                                         \
	X(shear, 1.0, 0.0, 10.0, "random shear (+/- degrees)")                                     \
	X(perspective, 0.0, 0.0, 0.001, "random perspective (+/- fraction)")                       \
	X(flipud, 1.0, 0.0, 1.0, "probability of an up-down flip")                                 \
	X(fliplr, 0.0, 0.0, 1.0, "probability of a left-right flip")                               \
	X(mosaic, 1.0, 0.0, 1.0, "probability of a 4-image mosaic")                                \
	X(mixup, 1.0, 0.0, 1.0, "probability of mixup")                                            \
	X(copy_paste, 1.0, 0.0, 1.0, "probability of segment copy-paste")                          \
	X(anchors, 2.0, 2.0, 10.0, "anchors per output grid")
