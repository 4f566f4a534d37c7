// One answer panel: the predicted class, its latency, a bar chart of the ten probabilities,
// and a line for notes and errors.

export class AnswerView {
  constructor(section) {
    this.digit = section.querySelector('.digit');
    this.latency = section.querySelector('.latency');
    this.note = section.querySelector('.note');
    this.bars = section.querySelector('.bars');
    this.rows = Array.from({ length: 10 }, (_, k) => {
      const row = document.createElement('li');
      row.innerHTML = `<span class="label">${k}</span><span class="track"><span class="fill"></span></span><span class="value"></span>`;
      this.bars.append(row);
      return { row, fill: row.querySelector('.fill'), value: row.querySelector('.value') };
    });
    this.clear();
  }

  show(cls, probabilities, milliseconds) {
    this.digit.textContent = String(cls);
    this.latency.textContent = `${milliseconds.toFixed(1)} ms`;
    this.rows.forEach(({ row, fill, value }, k) => {
      const p = probabilities[k] ?? 0;
      fill.style.width = `${(p * 100).toFixed(1)}%`;
      value.textContent = `${(p * 100).toFixed(1)}%`;
      row.classList.toggle('top', k === cls);
    });
    this.setNote('', false);
  }

  clear() {
    this.digit.textContent = '–';
    this.latency.textContent = '';
    this.rows.forEach(({ row, fill, value }) => {
      fill.style.width = '0';
      value.textContent = '';
      row.classList.remove('top');
    });
  }

  setNote(text, isError) {
    this.note.textContent = text;
    this.note.classList.toggle('error', Boolean(isError));
  }

  showError(message) {
    this.clear();
    this.setNote(message, true);
  }
}
