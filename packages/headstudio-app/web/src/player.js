// Motion playback: the audio element is the clock when there is audio (so picture and sound stay
// together), else the page's own clock; the motion loops.

export class Player {
  /**
   * @param {object} motion the manifest's motion entry ({frames, fps}) or null
   * @param {HTMLAudioElement|null} audio
   */
  constructor(motion, audio) {
    this.motion = motion;
    this.audio = audio;
    this.playing = false;
    this.start = 0; // page clock (ms) at frame 0 when playing without audio
    this.frame = -1;
  }

  get frames() {
    return this.motion ? this.motion.frames : 0;
  }

  /** Start playing from ``frame``. */
  async play(frame) {
    if (!this.motion) return;
    this.playing = true;
    this.seek(frame);
    if (this.audio) {
      try {
        await this.audio.play();
      } catch (err) {
        // no audio output (or autoplay blocked): keep the motion going on the page clock
        console.warn("audio could not play:", err.message);
        this.audio = null;
        this.seek(frame);
      }
    }
  }

  pause() {
    this.playing = false;
    if (this.audio) this.audio.pause();
  }

  /** Move the playhead to ``frame`` (playing or not). */
  seek(frame) {
    const f = Math.max(0, Math.min(this.frames - 1, frame));
    this.frame = f;
    const t = f / this.motion.fps;
    if (this.audio) this.audio.currentTime = t;
    this.start = performance.now() - t * 1000;
  }

  /** The playback clock in seconds: the audio's position when there is audio. */
  time() {
    return this.audio ? this.audio.currentTime : (performance.now() - this.start) / 1000;
  }

  /** The frame the clock says should be on screen now (advances while playing, loops). */
  tick() {
    if (!this.playing || !this.motion) return this.frame;
    let f = Math.floor(this.time() * this.motion.fps + 1e-6);
    const ended = this.audio ? this.audio.ended || f >= this.frames : f >= this.frames;
    if (ended) {
      this.seek(0);
      if (this.audio) this.audio.play().catch(() => {});
      f = 0;
    }
    this.frame = Math.min(f, this.frames - 1);
    return this.frame;
  }
}
