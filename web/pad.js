// The drawing pad: white strokes on black, drawn with a mouse, a finger or a pen (Pointer
// Events); pictures can be put on it too. Tells `onChange` after every change.

const STROKE_WIDTH = 22; // in canvas pixels: about MNIST's stroke for a digit drawn 200 pixels tall

export class Pad {
  constructor(canvas, onChange) {
    this.canvas = canvas;
    this.context = canvas.getContext('2d', { willReadFrequently: true });
    this.onChange = onChange;
    this.last = null;
    this.clear();
    canvas.addEventListener('pointerdown', (e) => this.start(e));
    canvas.addEventListener('pointermove', (e) => this.move(e));
    for (const type of ['pointerup', 'pointercancel', 'lostpointercapture']) canvas.addEventListener(type, () => this.end());
  }

  point(event) {
    const rect = this.canvas.getBoundingClientRect();
    return {
      x: ((event.clientX - rect.left) * this.canvas.width) / rect.width,
      y: ((event.clientY - rect.top) * this.canvas.height) / rect.height,
      // A pen's pressure thickens its stroke; a mouse reports 0.5 while pressed.
      width: STROKE_WIDTH * (event.pointerType === 'pen' && event.pressure > 0 ? 0.6 + event.pressure * 0.8 : 1),
    };
  }

  start(event) {
    event.preventDefault();
    try {
      this.canvas.setPointerCapture(event.pointerId); // keeps the stroke when the pointer leaves the pad
    } catch {
      // A pointer that is no longer active cannot be captured: draw without.
    }
    this.last = this.point(event);
    this.segment(this.last, this.last);
  }

  move(event) {
    if (!this.last) return;
    event.preventDefault();
    const events = event.getCoalescedEvents?.() ?? [event];
    for (const e of events.length ? events : [event]) {
      const next = this.point(e);
      this.segment(this.last, next);
      this.last = next;
    }
  }

  end() {
    this.last = null;
  }

  segment(from, to) {
    const c = this.context;
    c.strokeStyle = 'white';
    c.lineCap = 'round';
    c.lineJoin = 'round';
    c.lineWidth = to.width;
    c.beginPath();
    c.moveTo(from.x, from.y);
    c.lineTo(to.x, to.y);
    c.stroke();
    this.onChange();
  }

  clear() {
    this.context.fillStyle = 'black';
    this.context.fillRect(0, 0, this.canvas.width, this.canvas.height);
    this.onChange();
  }

  /** Shows `ink` (width x height, 1 = ink) on the pad, scaled to fit and centred. */
  showInk(ink, width, height) {
    const picture = new ImageData(width, height);
    ink.forEach((v, i) => picture.data.set([v * 255, v * 255, v * 255, 255], i * 4));
    const scale = Math.min(this.canvas.width / width, this.canvas.height / height);
    const [w, h] = [width * scale, height * scale];
    this.context.fillStyle = 'black';
    this.context.fillRect(0, 0, this.canvas.width, this.canvas.height);
    createImageBitmap(picture).then((bitmap) => {
      this.context.drawImage(bitmap, (this.canvas.width - w) / 2, (this.canvas.height - h) / 2, w, h);
      this.onChange();
    });
  }

  /** The pad's RGBA pixels: {data, width, height}. */
  pixels() {
    return this.context.getImageData(0, 0, this.canvas.width, this.canvas.height);
  }
}
