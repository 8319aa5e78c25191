/*
 * augment.h -- light data augmentation of a batch of images, in place:
 * random crops with zero padding and horizontal flips, as the training
 * scripts use on Fashion-MNIST.  Every random choice comes from the
 * generator given (lunet's seeded one from Lua), in a fixed order, so a
 * seed gives the same augmented batches every run.
 *
 *     // x {N,C,H,W}, contiguous: the batch buffer data.batches filled
 *     ln_augment_random_crop(&x, 4, ln_rng_global(), &err);
 *     ln_augment_hflip(&x, 0.5, ln_rng_global(), &err);
 */
#ifndef LN_AUGMENT_H
#define LN_AUGMENT_H

#include <stdint.h>

#include "../core/error.h"
#include "../core/rng.h"
#include "../core/tensor.h"

/* A random crop of size H x W from each image zero-padded by `pad` pixels
 * on every side (torchvision's RandomCrop(size, padding=pad)): for each
 * image, in order, a row offset then a column offset are drawn uniformly
 * in 0..2*pad, which shifts the image by dy = pad - row offset, dx = pad -
 * column offset.  pad >= 0.  Errors: LN_ESHAPE unless x is a contiguous
 * {N,C,H,W} tensor, LN_ERANGE for a negative pad. */
ln_status ln_augment_random_crop(ln_tensor *x, int64_t pad, ln_rng *rng, ln_error *err);

/* Mirrors each image left to right with probability p (one uniform draw
 * per image, in order).  p in [0,1], else LN_ERANGE; x as above. */
ln_status ln_augment_hflip(ln_tensor *x, double p, ln_rng *rng, ln_error *err);

/* The kernels, on one image (c,h,w) in place:
 *   shift: out[k,i,j] = in[k,i-dy,j-dx], 0 where that is outside the image;
 *   flip:  out[k,i,j] = in[k,i,w-1-j]. */
void ln_augment_shift_image(float *img, int64_t c, int64_t h, int64_t w, int64_t dy,
                            int64_t dx);
void ln_augment_flip_image(float *img, int64_t c, int64_t h, int64_t w);

#endif
