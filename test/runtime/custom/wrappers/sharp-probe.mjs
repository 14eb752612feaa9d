// Imports mlship's own sharp (external in a real bundle) from wherever the bundle is, decodes a base64 PNG row.
import { Buffer } from "node:buffer";
import sharp from "sharp";

export default {
  async predict(context, rows) {
    return Promise.all(rows.map(async (row) => {
      const meta = await sharp(Buffer.from(row.image, "base64")).metadata();
      return { info: { width: meta.width, height: meta.height, format: meta.format } };
    }));
  },
};
